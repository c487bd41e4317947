"""Builds the policy once for every worker: ``python -m resolver.service.builder IMAGE``.

The supervisor runs it at start and at each reload. It reads the configuration, the
policies, lists and zones, compiles them, counts the names each policy gained and lost
since the image already at IMAGE, and writes the new image (resolver.sources.shared)
in its place; the supervisor then hands it to the workers, which map it. A broken file is
reported here, once, and the image in force stays as it was. Exit status 0: written.

The workers read the image with the builder's string hash, so the supervisor starts the
builder and the workers with one PYTHONHASHSEED.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from resolver.core.errors import SourceError
from resolver.core.nametable import TableError
from resolver.service.observability import configure_logging, get_logger
from resolver.sources.config import Config, default_config, load_config
from resolver.sources.shared import name_changes, pack, read_image, write_image
from resolver.sources.snapshot import BuildResult, build_snapshot
from resolver.tools.check import reload_errors, reload_summary
from resolver.tools.control import removed_policies

IMAGE_ENV = "SINKHOLE_POLICY_IMAGE"  # the image a worker maps (set by the supervisor)
FAILED = 1


def image_dir() -> Path:
    """A new directory for policy images that only this user can open (mode 0700), in
    systemd's RuntimeDirectory when there is one."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
    return Path(tempfile.mkdtemp(prefix="sinkhole-", dir=runtime))


def _fields(exc: SourceError) -> dict[str, Any]:
    return {"file": exc.source, "line": exc.line, "column": exc.column, "error": exc.message}


def previous(image: Path) -> BuildResult | None:
    """The build in force (for the names gained and lost), or None."""
    try:
        light, _ = read_image(image)
    except (OSError, TableError):
        return None
    return light


def build_image(config: Config, image: Path, old: BuildResult | None = None) -> BuildResult:
    """Build from ``config``, compare with ``old`` (by default the build in the image at
    ``image``), and replace the image."""
    result = build_snapshot(config)
    if old is None:
        old = previous(image)
    changes = name_changes(old, result)
    removed = removed_policies(old, result)
    del old
    data, light = pack(result)
    del result
    write_image(image, data, light, {"changes": changes, "removed": removed})
    return light


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resolver.service.builder")
    parser.add_argument("image", type=Path, help="the image in force, replaced when built")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--start", action="store_true", help="the first build (not a reload)")
    args = parser.parse_args(argv)
    gc.disable()  # a short-lived process: a million names, no cycles worth collecting
    event = "policy_load_failed" if args.start else "policy_reload_failed"
    try:
        config = load_config(args.config) if args.config is not None else default_config()
    except SourceError as exc:
        configure_logging()
        get_logger().error(event, **_fields(exc))
        return FAILED
    configure_logging(config.log_level)
    log = get_logger()
    started = time.monotonic()
    try:
        light = build_image(config, args.image)
    except SourceError as exc:
        fields: dict[str, Any] = _fields(exc)
        if not args.start:
            errors = reload_errors(args.config, config, exc)
            fields = {
                "summary": reload_summary(errors),
                "kept": "previous policy",
                **fields,
                "errors": [_fields(e) for e in errors],
            }
        log.error(event, **fields)
        return FAILED
    except (OSError, TableError) as exc:
        log.error(event, error=f"cannot write the policy image {args.image}: {exc}")
        return FAILED
    log.info(
        "policy_built",
        image=str(args.image),
        names=light.snapshot.policy.names(),
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
    for warning in light.warnings:
        log.warning("list_lines_skipped", detail=warning)
    for warning in light.zone_warnings:
        log.warning("zone_warning", detail=warning)
    return 0


if __name__ == "__main__":
    sys.exit(main())
