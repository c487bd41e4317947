"""The ``upstreams`` key: plain ``host:port`` entries, ``tls://`` and ``https://`` ones
(resolver/core/upstream_spec.py), and ``upstream_ca``, the CA file the encrypted ones
check certificates with instead of the system trust store.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import yaml

from resolver.core.endpoint import Endpoint
from resolver.core.errors import SourceError, quote
from resolver.core.upstream_spec import FORMS, SecureUpstream, is_secure, parse_secure
from resolver.sources import files
from resolver.sources.yamlsource import Doc

UpstreamEntry = Endpoint | SecureUpstream
Keys = dict[str, tuple[yaml.Node, yaml.Node]]
CA_LIMIT = 4 * files.MiB
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def read_upstreams(
    doc: Doc,
    keys: Keys,
    base_dir: Path,
    plain: Callable[[str, int], Endpoint],
    default: Callable[[], tuple[Endpoint, ...]],
) -> tuple[UpstreamEntry, ...]:
    """The upstreams in order (``default()`` when the key is absent); ``plain`` reads a
    ``host:port`` entry."""
    ca_file = _ca_file(doc, keys["upstream_ca"][1], base_dir) if "upstream_ca" in keys else ""
    if "upstreams" not in keys:
        if ca_file:
            doc.fail(keys["upstream_ca"][0], _ca_unused())
        return default()
    found: list[UpstreamEntry] = []
    for item in doc.sequence(keys["upstreams"][1], "upstreams"):
        text = doc.string(item, "an entry of upstreams")
        if not is_secure(text):
            try:
                found.append(plain(text, 53))
            except ValueError as exc:
                doc.fail(
                    item,
                    f"upstreams: {quote(text)} is not an address like 127.0.0.1:53 or "
                    f"[::1]:53 ({exc}), nor {FORMS}",
                )
            continue
        try:
            found.append(parse_secure(text, ca_file))
        except ValueError as exc:
            doc.fail(item, f"upstreams: {quote(text)}: {exc}; write {FORMS}")
    if ca_file and not any(isinstance(u, SecureUpstream) for u in found):
        doc.fail(keys["upstream_ca"][0], _ca_unused())
    return tuple(found)


def _ca_unused() -> str:
    return (
        "upstream_ca is the CA of tls:// and https:// upstreams, and upstreams has none: "
        "add one or remove upstream_ca"
    )


def _ca_file(doc: Doc, node: yaml.Node, base_dir: Path) -> str:
    """The CA file's absolute path, once it was read as PEM certificates."""
    path = Path(doc.string(node, "upstream_ca"))
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = files.read_text(path, "CA file", CA_LIMIT)
    except SourceError as exc:
        doc.fail(node, f"upstream_ca: {path}: {exc.message}")
    if PEM_CERTIFICATE not in text:
        doc.fail(node, f"upstream_ca: {path} holds no PEM certificate ({PEM_CERTIFICATE} ...)")
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        doc.fail(node, f"upstream_ca: the certificates in {path} cannot be read ({exc})")
    return str(path)
