"""`sinkhole check`: every error and warning in the configuration, the policies and the lists.

Errors are what the server refuses to load; a broken policy file is one error, and
checking goes on with the next file, so one run shows everything to fix. Warnings
are entries that load but probably do not do what their author meant (see
resolver.tools.overlaps), policies out of force, and list lines that were skipped.
Each comes with the file and line of the entry.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from resolver.core.errors import SourceError
from resolver.sources.config import Config, default_config, load_config
from resolver.sources.lists import ListReport, read_list
from resolver.sources.policy_plain import PlainEntries
from resolver.sources.policy_yaml import PolicyFile, load_policy
from resolver.sources.rules import key_position
from resolver.sources.snapshot import AlreadyRead, build_snapshot
from resolver.tools.diagnostics import CheckResult, error_of, errors_of, plural
from resolver.tools.overlaps import Analysis


def run_check(config_path: Path | None, now: datetime | None = None) -> CheckResult:
    """Check the configuration at ``config_path`` (the built-in one when None)."""
    result = CheckResult()
    try:
        config = load_config(config_path) if config_path is not None else default_config()
    except SourceError as exc:
        result.diagnostics.extend(errors_of(exc))
        return result
    result.config = config
    check_config(config, result, now or datetime.now(UTC))
    return result


def reload_errors(
    config_path: Path | None, config: Config, first: SourceError
) -> list[SourceError]:
    """Every error that stops these files from loading, for the log of a failed reload
    (``first`` is the one the build stopped at). Reads the files again: run it off the loop."""
    try:
        if config_path is not None:
            config = load_config(config_path)
    except SourceError as exc:
        return list(getattr(exc, "errors", None) or [exc])
    result = CheckResult(config=config)
    check_config(config, result, datetime.now(UTC), warnings=False)
    errors = [
        SourceError(d.message, d.file, d.line, d.column)
        for d in result.diagnostics
        if d.severity == "error"
    ]
    return errors or [first]


def reload_summary(errors: list[SourceError]) -> str:
    """One line for the log of a failed reload: how many errors, and the first of them."""
    if not errors:
        return "the files do not load; the previous policy stays in force"
    first = error_of(errors[0]).text().replace(": error: ", ": ", 1)
    if len(errors) == 1:
        return f"the previous policy stays in force: {first}"
    return f"{len(errors)} errors, the previous policy stays in force; the first: {first}"


def check_config(config: Config, result: CheckResult, now: datetime, warnings: bool = True) -> None:
    """Errors and (with ``warnings``) warnings of a loaded configuration's files."""
    policies = _load_policies(config, result)
    result.policies = policies
    already = AlreadyRead()
    listed = _read_lists(policies, result, config.max_file_size, already)
    if warnings:
        _check_dates(policies, result, now)
        analysis = Analysis(policies, listed, result)
        analysis.run()
        already.entry_names.update(
            (order, analysis.entries.names_of(order))
            for order, policy in enumerate(policies)
            if isinstance(policy.entries, PlainEntries)
        )
        del analysis
    _check_zones(config, result)
    _check_warning_server(config, result)
    if not result.errors:
        _build(config, result, already)
    if not warnings:
        result.diagnostics = result.errors


def _load_policies(config: Config, result: CheckResult) -> list[PolicyFile]:
    policies: list[PolicyFile] = []
    seen: dict[str, str] = {}
    for pattern in config.policies:
        if any(ch in pattern for ch in "*?[") and not _glob_matches(config, pattern):
            line, column = _config_position(config, pattern)
            result.warn(config.source, line, column, f"policies: {pattern!r} matches no file")
    for path in config.policy_files():
        try:
            policy = load_policy(path, config.state_dir)
        except SourceError as exc:
            result.diagnostics.append(error_of(exc))
            continue
        if policy.info.id in seen:
            line, column = key_position(policy.info.source, ["id"])
            result.error(
                policy.info.source,
                line,
                column,
                f"policy id {policy.info.id!r} is already used by {seen[policy.info.id]}; "
                "every policy needs its own id",
            )
            continue
        seen[policy.info.id] = policy.info.source
        policies.append(policy)
    return policies


def _glob_matches(config: Config, pattern: str) -> bool:
    path = Path(pattern)
    if not path.is_absolute():
        path = config.base_dir / path
    return any(path.parent.glob(path.name))


def _config_position(config: Config, text: str) -> tuple[int, int]:
    try:
        lines = Path(config.source).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0, 0
    for number, line in enumerate(lines, 1):
        column = line.find(text)
        if column >= 0:
            return number, column + 1
    return 0, 0


def _read_lists(
    policies: list[PolicyFile], result: CheckResult, limit: int, already: AlreadyRead
) -> dict[tuple[int, int], list[bytes]]:
    """The names of every list, keyed by (policy order, list position), also kept with their
    reports in ``already`` for the build; bad lines warned, and fetched lists with no copy
    yet. Distinct names counted per match mode."""
    out: dict[tuple[int, int], list[bytes]] = {}
    modes: dict[str, set[bytes]] = {}
    for order, policy in enumerate(policies):
        total = 0
        for position, ref in enumerate(policy.lists):
            report = ListReport(str(ref.path))
            try:
                names = list(read_list(ref, report, limit))
            except SourceError as exc:
                result.diagnostics.append(error_of(exc))
                continue
            except OSError as exc:
                result.error(
                    policy.info.source,
                    ref.line,
                    ref.column or 1,
                    f"cannot read the list {str(ref.path)!r}: {exc.strerror or exc}",
                )
                continue
            out[(order, position)] = names
            already.lists[(order, position)] = (names, report)
            modes.setdefault(ref.mode, set()).update(names)
            total += len(names)
            if report.missing:
                result.warn(
                    policy.info.source,
                    ref.line,
                    ref.column or 1,
                    f"no copy of {ref.url} yet (it is kept at {ref.path}): the list is empty "
                    "until the server has fetched it",
                )
            if report.bad:
                first = report.examples[0][0] if report.examples else 0
                shown = "; ".join(f"line {n}: {message}" for n, message in report.examples)
                result.warn(
                    str(ref.path),
                    first,
                    1,
                    f"{report.bad} {plural(report.bad, 'line')} skipped in this list of "
                    f"policy {policy.info.id!r} (the first {len(report.examples)}: {shown})",
                )
        result.list_names[policy.info.id] = total
    result.list_modes = {mode: len(names) for mode, names in sorted(modes.items())}
    return out


def _check_dates(policies: list[PolicyFile], result: CheckResult, now: datetime) -> None:
    for policy in policies:
        info = policy.info
        if info.expires is not None and info.expires <= now:
            line, column = key_position(info.source, ["expires"])
            result.warn(
                info.source,
                line,
                column,
                f"policy {info.id!r} expired on {_when(info.expires)}: none of its entries is "
                "enforced; remove the file or set a later expiry date",
            )
        elif info.effective_from is not None and info.effective_from > now:
            line, column = key_position(
                info.source, ["effective_from", "effective", "valid_from", "from", "starts"]
            )
            result.warn(
                info.source,
                line,
                column,
                f"policy {info.id!r} is not in force yet: it comes into force on "
                f"{_when(info.effective_from)}; until then none of its entries is enforced",
            )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _check_zones(config: Config, result: CheckResult) -> None:
    """RPZ zones: each broken zone is one error; what loading a zone warns about, a warning."""
    zones = getattr(config, "zones", ())
    if not zones:
        return
    try:
        rpz = importlib.import_module("resolver.sources.rpz")
    except ImportError:  # pragma: no cover - a build without zone support
        return
    first = len(result.policies)
    for order, zone in enumerate(zones, start=first):
        try:
            loaded = rpz.load_zone(zone, order)
        except SourceError as exc:
            result.diagnostics.append(error_of(exc))
            continue
        except OSError as exc:
            result.error(str(zone.file), 0, 0, f"cannot read the zone file: {exc.strerror or exc}")
            continue
        for warning in loaded.report.warnings:
            found = re.search(r"at line (\d+)", warning)
            result.warn(str(zone.file), int(found.group(1)) if found else 0, 0, warning)


def _check_warning_server(config: Config, result: CheckResult) -> None:
    """The warning server's templates compile, and its certificate and key can be used."""
    settings = getattr(config, "warning_server", None)
    if settings is None:
        return
    from resolver.tools.warningpage import Pages, TemplateError, load_static, load_templates
    from resolver.tools.warningtls import TlsSetupError, tls_context

    line, column = key_position(config.source, ["warning_server"])
    try:
        Pages(load_templates(settings.templates))
        load_static(settings.templates)
    except TemplateError as exc:
        if exc.line:
            result.error(exc.file, exc.line, 1, f"template: {exc.message}")
        else:
            result.error(
                config.source, line, column, f"warning_server.templates: {exc.file}: {exc.message}"
            )
    except OSError as exc:
        result.error(config.source, line, column, f"warning_server.templates: {exc}")
    if settings.tls is not None:
        try:
            tls_context(settings.tls)
        except TlsSetupError as exc:
            result.error(config.source, line, column, f"warning_server.tls: {exc}")


def _build(config: Config, result: CheckResult, already: AlreadyRead) -> None:
    """Build the compiled policy as the server would: the last word on loading."""
    try:
        # Read once, with no error in any of them: not read again.
        built = build_snapshot(config, result.policies, already)
    except SourceError as exc:
        if not any(d.severity == "error" and d.message == exc.message for d in result.diagnostics):
            result.diagnostics.append(error_of(exc))
        return
    result.names = built.snapshot.policy.names()


def render_text(result: CheckResult) -> Iterable[str]:
    """Errors, then warnings, each group in file and line order, then a summary line."""
    for group in (result.errors, result.warnings):
        for diagnostic in sorted(group, key=lambda d: (d.file, d.line, d.column)):
            yield diagnostic.text()
    errors, warnings = len(result.errors), len(result.warnings)
    if errors:
        yield (
            f"failed: {errors} {plural(errors, 'error')}, {warnings} {plural(warnings, 'warning')}"
        )
        return
    source = result.config.source if result.config else "?"
    summary = f"ok: {source}: {len(result.policies)} policies, {result.names} names"
    if result.list_modes:
        shown = ", ".join(f"{count} {mode}" for mode, count in result.list_modes.items())
        summary += f" (list names: {shown})"
    if warnings:
        summary += f", {warnings} {plural(warnings, 'warning')}"
    yield summary
