"""The configuration's sections with a syntax of their own, each read from its YAML node
into a checked value: addresses, sizes and durations, cache, query_log, rate_limit, control,
pid_file, tls, warning_server and zones (with their TSIG keys); every error with file and line."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from resolver.core.cache import CacheSettings
from resolver.core.endpoint import Endpoint
from resolver.core.errors import quote
from resolver.core.ratelimit import RateLimit
from resolver.core.wire import text_to_name
from resolver.sources import files
from resolver.sources.yamlsource import Doc, describe

QUERY_LOG_MODES = ("off", "blocked", "all")
QUERY_LOG_CLIENTS = ("full", "truncated", "hashed", "none")

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
ZONE_EXPIRE_ACTIONS = ("keep", "drop")
RATE_LIMIT_KEYS = frozenset(
    {"responses_per_second", "slip", "ipv4_prefix", "ipv6_prefix", "exempt"}
)
ZONE_KEYS = frozenset({"name", "file", "primaries", "tsig", "on_expire", "include_dirs"})
SIZE_UNITS = {"": 1, "k": files.KiB, "m": files.MiB, "g": files.GiB}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class TsigKey:
    name: str  # key name, as the primary knows it
    algorithm: str  # one of TSIG_ALGORITHMS
    secret_file: Path  # base64 secret, as in BIND's key statement


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """An RPZ zone: its origin and file; with primaries it is kept up to date by zone transfer."""

    name: str  # the origin, lower case, with its trailing dot
    file: Path
    primaries: tuple[Endpoint, ...] = ()
    tsig: TsigKey | None = None
    on_expire: str = "keep"  # past SOA expire without a refresh: keep enforcing, or drop the zone
    line: int = 0
    include_dirs: tuple[Path, ...] = ()  # $INCLUDE may read here too, besides the file's directory
    max_size: int = files.DEFAULT_MAX_SIZE  # the most bytes read from one of its files


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The certificate of the encrypted listeners (DoT, DoH), read again on every reload."""

    cert: Path  # PEM: the certificate, then the chain
    key: Path  # PEM: its private key
    name: str = ""  # the name clients check it against (DDR's target); "": from the cert


@dataclass(frozen=True, slots=True)
class WarningTls:
    """HTTPS for the warning server: the operator's certificate, for the warning host's name."""

    listen: tuple[Endpoint, ...]
    cert: Path  # PEM: the certificate, then any intermediates
    key: Path  # PEM: its private key


@dataclass(frozen=True, slots=True)
class WarningServer:
    """The web server at the warning-page address: the page a blocked name lands on."""

    listen: tuple[Endpoint, ...]
    templates: Path | None = None  # the operator's templates and static files
    tls: WarningTls | None = None


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; the host must be an IP address."""
    text = text.strip()
    port = default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError("missing ']' after an IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':port' after ']'")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host = text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("the host is not an IP address") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return Endpoint(host, port)


def read_pid_file(doc: Doc, node: yaml.Node, base_dir: Path) -> Path | bool:
    """A path (relative to the configuration's directory), or true/false: the default, none."""
    value = doc.value(node)
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = doc.string(node, "pid_file (a file path, or false for none)")
    if not text.strip() or text.endswith("/"):
        doc.fail(node, f"pid_file must name a file, not {quote(text)}")
    path = Path(text)
    return path if path.is_absolute() else base_dir / path


def read_tls(doc: Doc, node: yaml.Node, base_dir: Path) -> TlsConfig:
    keys = doc.mapping(node, "tls")
    doc.reject_unknown(keys, {"cert", "key", "name"}, "tls")
    paths = []
    for required in ("cert", "key"):
        if required not in keys:
            doc.fail(node, f"tls needs a {required}: key (a PEM file)")
        path = Path(doc.string(keys[required][1], f"tls: {required}"))
        paths.append(path if path.is_absolute() else base_dir / path)
    name = ""
    if "name" in keys:
        name = doc.string(keys["name"][1], "tls: name").strip().rstrip(".").lower()
        try:
            wire_name = text_to_name(name)
        except ValueError as exc:
            doc.fail(keys["name"][1], f"tls: name {quote(name)} is not a host name ({exc})")
        if wire_name == b"\x00":
            doc.fail(keys["name"][1], "tls: name must be the host name of the certificate")
    return TlsConfig(paths[0], paths[1], name)


def read_control(doc: Doc, node: yaml.Node) -> Endpoint | None:
    """The control endpoint's address: loopback only, since it has no authentication."""
    if doc.value(node) in (None, False):
        return None
    text = doc.string(node, "control")
    try:
        endpoint = parse_endpoint(text, 9154)
    except ValueError as exc:
        doc.fail(node, f"control: {quote(text)} is not an address like 127.0.0.1:9154 ({exc})")
    if not ipaddress.ip_address(endpoint.host).is_loopback:
        doc.fail(
            node,
            f"control: {quote(text)} is not a loopback address; the control endpoint has no "
            "authentication, so it only listens on 127.0.0.1 or [::1] (such as 127.0.0.1:9154)",
        )
    return endpoint


def read_query_log(doc: Doc, node: yaml.Node) -> dict[str, Any]:
    """``query_log: MODE``, or ``{mode: MODE, client: HOW, sample: SHARE}``."""
    values: dict[str, Any] = {}
    if isinstance(node, yaml.MappingNode):
        fields = doc.mapping(node, "query_log")
        doc.reject_unknown(fields, {"mode", "client", "sample"}, "query_log")
        if "client" in fields:
            how = doc.string(fields["client"][1], "query_log.client").strip().lower()
            if how not in QUERY_LOG_CLIENTS:
                doc.fail(
                    fields["client"][1],
                    f"query_log.client must be one of {', '.join(QUERY_LOG_CLIENTS)}, "
                    f"not {quote(how)}",
                )
            values["query_log_client"] = how
        if "sample" in fields:
            share = doc.value(fields["sample"][1])
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
                doc.fail(
                    fields["sample"][1],
                    "query_log.sample must be a share of the queries, more than 0 and at most 1 "
                    "(0.01 logs one query in a hundred)",
                )
            values["query_log_sample"] = float(share)
        if "mode" not in fields:
            values["query_log"] = "all" if "sample" in fields else "blocked"
            return values
        node = fields["mode"][1]
    mode = doc.value(node)
    if mode is False or mode is None:
        mode = "off"
    if mode not in QUERY_LOG_MODES:
        doc.fail(node, f"query_log must be one of {', '.join(QUERY_LOG_MODES)}, not {quote(mode)}")
    values["query_log"] = mode
    return values


def read_endpoints(
    doc: Doc, node: yaml.Node, what: str, port: int, like: str, entry: str = ""
) -> tuple[Endpoint, ...]:
    """A list of addresses (``port`` where one gives none); an error shows ``like``.
    ``entry`` names one item in an error (default: an entry of ``what``)."""
    out = []
    for item in doc.sequence(node, what):
        text = doc.string(item, entry or f"an entry of {what}")
        try:
            out.append(parse_endpoint(text, port))
        except ValueError as exc:
            doc.fail(item, f"{what}: {quote(text)} is not an address like {like} ({exc})")
    return tuple(out)


def _addresses(doc: Doc, node: yaml.Node, what: str, port: int) -> tuple[Endpoint, ...]:
    out = read_endpoints(doc, node, what, port, f"0.0.0.0:{port}")
    if not out:
        doc.fail(node, f"{what} must name at least one address, like 0.0.0.0:{port}")
    return out


def read_warning_server(doc: Doc, node: yaml.Node, base_dir: Path) -> WarningServer | None:
    """``warning_server: {listen: [...], templates: dir, tls: {listen, cert, key}}``."""
    if doc.value(node) in (None, False):
        return None
    keys = doc.mapping(node, "warning_server")
    doc.reject_unknown(keys, {"listen", "templates", "tls"}, "warning_server")

    def path(fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str, what: str) -> Path:
        found = Path(doc.string(fields[key][1], what))
        return found if found.is_absolute() else base_dir / found

    if "listen" not in keys:
        doc.fail(node, 'warning_server needs a listen: key, like listen: ["0.0.0.0:80"]')
    listen = _addresses(doc, keys["listen"][1], "warning_server.listen", 80)
    templates = path(keys, "templates", "warning_server.templates") if "templates" in keys else None
    tls = None
    if "tls" in keys and doc.value(keys["tls"][1]) not in (None, False):
        tls_node = keys["tls"][1]
        fields = doc.mapping(tls_node, "warning_server.tls")
        doc.reject_unknown(fields, {"listen", "cert", "key"}, "warning_server.tls")
        for required in ("listen", "cert", "key"):
            if required not in fields:
                doc.fail(tls_node, f"warning_server.tls needs a {required}: key")
        tls = WarningTls(
            _addresses(doc, fields["listen"][1], "warning_server.tls.listen", 443),
            path(fields, "cert", "warning_server.tls.cert"),
            path(fields, "key", "warning_server.tls.key"),
        )
    return WarningServer(listen, templates, tls)


def read_rate_limit(doc: Doc, node: yaml.Node) -> RateLimit | None:
    """Response rate limiting for UDP; ``false`` (or ``off``) turns it off."""
    if doc.value(node) in (None, False, "off"):
        return None
    keys = doc.mapping(node, "rate_limit")
    doc.reject_unknown(keys, RATE_LIMIT_KEYS, "rate_limit")
    limits = {"responses_per_second": (1, None), "slip": (0, 10)}
    limits.update(ipv4_prefix=(1, 32), ipv6_prefix=(1, 128))
    values: dict[str, Any] = {}
    for key, (low, high) in limits.items():
        if key in keys:
            values[key] = doc.integer(keys[key][1], f"rate_limit.{key}", low, high)
    if "exempt" in keys:
        nets = []
        for item in doc.sequence(keys["exempt"][1], "rate_limit.exempt"):
            text = doc.string(item, "an entry of rate_limit.exempt")
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                doc.fail(item, f"rate_limit.exempt: {quote(text)} is not a network like 10.0.0.0/8")
        values["exempt"] = tuple(nets)
    return replace(RateLimit(), **values)


def read_cache(doc: Doc, node: yaml.Node) -> CacheSettings:
    keys = doc.mapping(node, "cache")
    doc.reject_unknown(keys, {"max_entries", "min_ttl", "max_ttl", "stale_max"}, "cache")
    base = CacheSettings()
    max_entries = (
        doc.integer(keys["max_entries"][1], "cache.max_entries", 0)
        if "max_entries" in keys
        else base.max_entries
    )
    min_ttl = (
        doc.integer(keys["min_ttl"][1], "cache.min_ttl", 0) if "min_ttl" in keys else base.min_ttl
    )
    max_ttl = (
        doc.integer(keys["max_ttl"][1], "cache.max_ttl", 0) if "max_ttl" in keys else base.max_ttl
    )
    if min_ttl > max_ttl:
        doc.fail(node, f"cache.min_ttl ({min_ttl}) is larger than cache.max_ttl ({max_ttl})")
    stale_max = (
        _duration(doc, keys["stale_max"][1], "cache.stale_max")
        if "stale_max" in keys
        else base.stale_max
    )
    return CacheSettings(max_entries, min_ttl, max_ttl, stale_max)


def _duration(doc: Doc, node: yaml.Node, what: str) -> int:
    """Whole seconds: a number, or one with a unit (30s, 15m, 12h, 1d)."""
    value = doc.value(node)
    example = f"{what} must be a duration like 1d, 12h, 30m or 45s, or a number of seconds"
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value.lower())
        if found is None:
            doc.fail(node, f"{example}, not {quote(value)}")
        return int(found.group(1)) * DURATION_UNITS[found.group(2)]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    doc.fail(node, f"{example}, not {describe(value)}")


def read_size(doc: Doc, node: yaml.Node, what: str) -> int:
    """A size in bytes: a number, or one with a binary unit (512MiB, 2 GiB, 64K)."""
    value = doc.value(node)
    example = f"{what} must be a size like 512MiB or 2GiB, or a number of bytes"
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+)\s*(?:([kmg])(?:ib)?)?\s*", value.lower())
        if found is None:
            doc.fail(node, f"{example}, not {quote(value)}")
        size = int(found.group(1)) * SIZE_UNITS[found.group(2) or ""]
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        doc.fail(node, f"{example}, not {describe(value)}")
    if size < files.KiB:
        doc.fail(node, f"{what} must be at least 1KiB, not {size}")
    return size


def read_zones(
    doc: Doc, node: yaml.Node, base_dir: Path, max_size: int = files.DEFAULT_MAX_SIZE
) -> tuple[ZoneConfig, ...]:
    zones = []
    seen: set[str] = set()
    for item in doc.sequence(node, "zones", allow_scalar=False):
        keys = doc.mapping(item, "an entry of zones")
        doc.reject_unknown(keys, ZONE_KEYS, "an entry of zones")
        for required in ("name", "file"):
            if required not in keys:
                doc.fail(item, f"an entry of zones needs a {required}: key")
        name = doc.string(keys["name"][1], "zones: name").strip().lower().rstrip(".") + "."
        if name == "." or " " in name:
            doc.fail(keys["name"][1], "zones: name must be the zone's origin, like rpz.example.")
        if name in seen:
            doc.fail(keys["name"][1], f"zone {quote(name)} is listed twice")
        seen.add(name)
        file = Path(doc.string(keys["file"][1], "zones: file"))
        if not file.is_absolute():
            file = base_dir / file
        primaries: tuple[Endpoint, ...] = ()
        if "primaries" in keys:
            where = "zones: primaries"
            primaries = read_endpoints(doc, keys["primaries"][1], where, 53, "192.0.2.53:53", where)
        tsig = None
        if "tsig" in keys:
            tkeys = doc.mapping(keys["tsig"][1], "zones: tsig")
            doc.reject_unknown(tkeys, {"name", "algorithm", "secret_file"}, "zones: tsig")
            for required in ("name", "secret_file"):
                if required not in tkeys:
                    doc.fail(keys["tsig"][1], f"zones: tsig needs a {required}: key")
            algorithm = (
                doc.string(tkeys["algorithm"][1], "tsig algorithm").lower()
                if "algorithm" in tkeys
                else "hmac-sha256"
            )
            if algorithm not in TSIG_ALGORITHMS:
                doc.fail(
                    tkeys["algorithm"][1],
                    f"tsig algorithm must be one of {', '.join(TSIG_ALGORITHMS)}",
                )
            secret = Path(doc.string(tkeys["secret_file"][1], "tsig secret_file"))
            if not secret.is_absolute():
                secret = base_dir / secret
            tsig = TsigKey(doc.string(tkeys["name"][1], "tsig name"), algorithm, secret)
        on_expire = "keep"
        if "on_expire" in keys:
            on_expire = doc.string(keys["on_expire"][1], "zones: on_expire").lower()
            if on_expire not in ZONE_EXPIRE_ACTIONS:
                doc.fail(keys["on_expire"][1], "zones: on_expire must be keep or drop")
        if not primaries and tsig is not None:
            doc.fail(keys["tsig"][1], "zones: tsig is only used with primaries")
        include_dirs: list[Path] = []
        if "include_dirs" in keys:
            for entry in doc.sequence(keys["include_dirs"][1], "zones: include_dirs"):
                folder = Path(doc.string(entry, "zones: include_dirs"))
                include_dirs.append(folder if folder.is_absolute() else base_dir / folder)
        zones.append(
            ZoneConfig(
                name,
                file,
                primaries,
                tsig,
                on_expire,
                item.start_mark.line + 1,
                tuple(include_dirs),
                max_size,
            )
        )
    return tuple(zones)
