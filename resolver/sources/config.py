"""The configuration file: YAML mapped onto frozen dataclasses, every error with file and line."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from resolver.core.cache import CacheSettings
from resolver.core.endpoint import Endpoint
from resolver.core.errors import ConfigError, quote
from resolver.core.ratelimit import RateLimit
from resolver.core.verdict import Answers
from resolver.core.wire import text_to_name
from resolver.sources import files
from resolver.sources.upstream_entries import UpstreamEntry, read_upstreams
from resolver.sources.yamlsource import Doc, describe
from resolver.sources.yamlvalues import read_warning_page

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ALLOW = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
)
QUERY_LOG_MODES = ("off", "blocked", "all")
QUERY_LOG_CLIENTS = ("full", "truncated", "hashed", "none")
LOG_FORMATS = ("auto", "json", "console")  # auto: console on a terminal, JSON lines otherwise

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
ZONE_EXPIRE_ACTIONS = ("keep", "drop")


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


@dataclass(frozen=True)
class Config:
    source: str = "<built-in default>"
    base_dir: Path = PROJECT_ROOT
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 5353), Endpoint("::1", 5353))
    upstreams: tuple[UpstreamEntry, ...] = ()  # host:port, tls:// and https:// entries
    policies: tuple[str, ...] = ("policies/*.yaml",)
    answers: Answers = field(
        default_factory=lambda: Answers(
            (ipaddress.IPv4Address("192.0.2.80"),), (ipaddress.IPv6Address("2001:db8::80"),), 60
        )
    )
    cache: CacheSettings = field(default_factory=CacheSettings)
    query_log: str = "blocked"
    query_log_client: str = "full"  # full | truncated | hashed | none
    query_log_sample: float = 1.0  # the share of non-blocked queries logged in mode "all"
    allow_clients: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in DEFAULT_ALLOW)
    upstream_timeout: float = 1.0
    query_timeout: float = 4.0
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 512
    metrics: Endpoint | None = None
    control: Endpoint | None = None  # the control endpoint (loopback only); off when None
    log_level: str = "info"
    workers: int = 0  # 0: one per CPU core this process may run on
    zones: tuple[ZoneConfig, ...] = ()  # RPZ zones, in order (first zone wins)
    udp_batch: bool = True  # UDP in batches (recvmmsg/sendmmsg) where the platform has them
    max_file_size: int = files.DEFAULT_MAX_SIZE  # the most bytes read from a list or zone file
    log_format: str = "auto"  # one of LOG_FORMATS
    pid_file: Path | bool = True  # True: the default place (see service/pidfile.py); False: none
    listen_tls: tuple[Endpoint, ...] = ()  # DNS over TLS (RFC 7858); off when empty
    listen_https: tuple[Endpoint, ...] = ()  # DNS over HTTPS (RFC 8484); off when empty
    tls: TlsConfig | None = None  # needed by listen_tls and listen_https
    warning_server: WarningServer | None = None  # the warning page's web server; off when None
    tcp_query_timeout: float = 5.0  # seconds a TCP query may take to arrive, from its first byte
    tcp_max_per_client: int = 64  # open client TCP connections from one address, per worker
    max_inflight: int = 10000  # questions waiting for an upstream per worker; then SERVFAIL
    rate_limit: RateLimit | None = field(default_factory=RateLimit)  # UDP answers; None: off
    state_dir: Path | None = None  # copies of fetched lists; None: see sources/listcopy.py

    def worker_count(self) -> int:
        if self.workers:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)

    def policy_files(self) -> list[Path]:
        """The policy files the ``policies`` globs name, in order, each once."""
        seen: dict[Path, None] = {}
        for pattern in self.policies:
            path = Path(pattern)
            if not path.is_absolute():
                path = self.base_dir / path
            if any(ch in pattern for ch in "*?["):
                matches = sorted(path.parent.glob(path.name))
            else:
                matches = [path]
            for match in matches:
                seen.setdefault(match, None)
        return list(seen)


KNOWN_KEYS = frozenset(
    {
        "listen",
        "upstreams",
        "policies",
        "warning_page",
        "cache",
        "query_log",
        "allow_clients",
        "upstream_timeout",
        "query_timeout",
        "tcp_idle_timeout",
        "tcp_max_connections",
        "metrics",
        "control",
        "log_level",
        "workers",
        "zones",
        "udp_batch",
        "max_file_size",
        "log_format",
        "pid_file",
        "listen_tls",
        "listen_https",
        "tls",
        "warning_server",
        "tcp_query_timeout",
        "tcp_max_per_client",
        "max_inflight",
        "rate_limit",
        "state_dir",
        "upstream_ca",
    }
)
RATE_LIMIT_KEYS = frozenset(
    {"responses_per_second", "slip", "ipv4_prefix", "ipv6_prefix", "exempt"}
)
ZONE_KEYS = frozenset({"name", "file", "primaries", "tsig", "on_expire", "include_dirs"})
SIZE_UNITS = {"": 1, "k": files.KiB, "m": files.MiB, "g": files.GiB}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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


def resolv_conf_upstreams(path: str = "/etc/resolv.conf") -> tuple[Endpoint, ...]:
    """The nameservers of the system resolver configuration."""
    found: list[Endpoint] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(parse_endpoint(parts[1].split("%")[0], 53))
            except ValueError:
                continue
    return tuple(found)


def default_config() -> Config:
    """The built-in configuration: loopback on port 5353, bundled policies, system nameservers."""
    return Config(upstreams=resolv_conf_upstreams())


def load_config(path: str | os.PathLike[str]) -> Config:
    """The configuration file (a regular file of at most files.MAX_YAML_SIZE), parsed."""
    text = files.read_text(Path(path), "configuration", files.MAX_YAML_SIZE, ConfigError)
    return parse_config(text, str(path), Path(path).resolve().parent)


READ_WITH = {
    "listen_tls": ("tls", "listen", "listen_https"),
    "listen_https": ("tls", "listen", "listen_tls"),
    "upstream_ca": ("upstreams",),
}


class ConfigErrors(ConfigError):
    """Every error found in a configuration file; as a ConfigError, the first of them."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.source, first.line, first.column)
        self.errors = errors


def parse_config(text: str, source: str, base_dir: Path) -> Config:
    """The configuration in ``text``; ConfigErrors with every error found (each top-level
    key is read on its own to find them) when it is invalid."""
    doc = Doc(text, source, ConfigError)
    if doc.root is None:
        return Config(source=source, base_dir=base_dir, upstreams=resolv_conf_upstreams())
    keys = doc.mapping(doc.root, "the configuration")
    try:
        return _parse_keys(doc, keys, source, base_dir)
    except ConfigError as first:
        errors: dict[tuple[int, int, str], ConfigError] = {}
        for key, entry in keys.items():
            # A key is read with the keys its checks look at too (the certificate of the
            # encrypted listeners, the addresses they must not share).
            alone = {key: entry} | {k: keys[k] for k in READ_WITH.get(key, ()) if k in keys}
            try:
                _parse_keys(doc, alone, source, base_dir)
            except ConfigError as exc:
                errors.setdefault((exc.line, exc.column, exc.message), exc)
        errors.setdefault((first.line, first.column, first.message), first)
        raise ConfigErrors(sorted(errors.values(), key=lambda e: (e.line, e.column))) from None


def _parse_keys(
    doc: Doc, keys: dict[str, tuple[yaml.Node, yaml.Node]], source: str, base_dir: Path
) -> Config:
    doc.reject_unknown(keys, KNOWN_KEYS, "the configuration")
    values: dict[str, object] = {"source": source, "base_dir": base_dir}

    def endpoints(key: str, default_port: int) -> tuple[Endpoint, ...]:
        _, node = keys[key]
        out = []
        for item in doc.sequence(node, key):
            text = doc.string(item, f"an entry of {key}")
            try:
                out.append(parse_endpoint(text, default_port))
            except ValueError as exc:
                doc.fail(
                    item,
                    f"{key}: {quote(text)} is not an address like 127.0.0.1:53 or [::1]:53 ({exc})",
                )
        return tuple(out)

    if "listen" in keys:
        values["listen"] = endpoints("listen", 53)
        if not values["listen"]:
            doc.fail(keys["listen"][1], "listen must name at least one address")
    values["upstreams"] = read_upstreams(doc, keys, base_dir, parse_endpoint, resolv_conf_upstreams)
    if "policies" in keys:
        _, node = keys["policies"]
        values["policies"] = tuple(
            doc.string(item, "an entry of policies") for item in doc.sequence(node, "policies")
        )
    if "warning_page" in keys:
        values["answers"], _ = read_warning_page(doc, keys["warning_page"][1])
    if "cache" in keys:
        values["cache"] = _cache(doc, keys["cache"][1])
    if "query_log" in keys:
        values.update(_query_log(doc, keys["query_log"][1]))
    if "allow_clients" in keys:
        _, node = keys["allow_clients"]
        nets = []
        for item in doc.sequence(node, "allow_clients"):
            text = doc.string(item, "an entry of allow_clients")
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                doc.fail(item, f"allow_clients: {quote(text)} is not a network like 192.0.2.0/24")
        values["allow_clients"] = tuple(nets)
    for key in ("upstream_timeout", "query_timeout", "tcp_idle_timeout", "tcp_query_timeout"):
        if key in keys:
            seconds = doc.number(keys[key][1], key, 0.001)
            values[key] = seconds
    if "tcp_max_connections" in keys:
        values["tcp_max_connections"] = doc.integer(
            keys["tcp_max_connections"][1], "tcp_max_connections", 1
        )
    for key in ("tcp_max_per_client", "max_inflight"):
        if key in keys:
            values[key] = doc.integer(keys[key][1], key, 1)
    if "rate_limit" in keys:
        values["rate_limit"] = _rate_limit(doc, keys["rate_limit"][1])
    if "metrics" in keys:
        _, node = keys["metrics"]
        if doc.value(node) in (None, False):
            values["metrics"] = None
        else:
            text = doc.string(node, "metrics")
            try:
                values["metrics"] = parse_endpoint(text, 9153)
            except ValueError as exc:
                doc.fail(
                    node, f"metrics: {quote(text)} is not an address like 127.0.0.1:9153 ({exc})"
                )
    if "control" in keys:
        values["control"] = _control(doc, keys["control"][1])
    if "workers" in keys:
        _, node = keys["workers"]
        value = doc.value(node)
        if value == "auto":
            values["workers"] = 0
        else:
            values["workers"] = doc.integer(
                node, "workers (a number, or auto for one per core)", 1, 256
            )
    max_size = files.DEFAULT_MAX_SIZE
    if "max_file_size" in keys:
        max_size = values["max_file_size"] = _size(doc, keys["max_file_size"][1], "max_file_size")
    if "zones" in keys:
        values["zones"] = _zones(doc, keys["zones"][1], base_dir, max_size)
    if "udp_batch" in keys:
        _, node = keys["udp_batch"]
        flag = doc.value(node)
        if not isinstance(flag, bool):
            doc.fail(node, f"udp_batch must be true or false, not {describe(flag)}")
        values["udp_batch"] = flag
    _encrypted(doc, keys, values, endpoints, base_dir)
    if "warning_server" in keys:
        values["warning_server"] = _warning_server(doc, keys["warning_server"][1], base_dir)
    if "log_level" in keys:
        _, node = keys["log_level"]
        level = doc.string(node, "log_level").lower()
        if level not in ("debug", "info", "warning", "error"):
            doc.fail(node, f"log_level must be debug, info, warning or error, not {quote(level)}")
        values["log_level"] = level
    if "log_format" in keys:
        _, node = keys["log_format"]
        form = doc.string(node, "log_format").lower()
        if form not in LOG_FORMATS:
            doc.fail(node, f"log_format must be auto, json or console, not {quote(form)}")
        values["log_format"] = form
    if "pid_file" in keys:
        values["pid_file"] = _pid_file(doc, keys["pid_file"][1], base_dir)
    if "state_dir" in keys:
        _, node = keys["state_dir"]
        text = doc.string(node, "state_dir (a directory)").strip()
        if not text:
            doc.fail(node, "state_dir must name a directory, like /var/lib/sinkhole")
        state = Path(text)
        values["state_dir"] = state if state.is_absolute() else base_dir / state
    return Config(**values)  # type: ignore[arg-type]


def _pid_file(doc: Doc, node: yaml.Node, base_dir: Path) -> Path | bool:
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


def _encrypted(
    doc: Doc,
    keys: dict[str, tuple[yaml.Node, yaml.Node]],
    values: dict[str, object],
    endpoints: Callable[[str, int], tuple[Endpoint, ...]],
    base_dir: Path,
) -> None:
    """listen_tls (port 853 by default), listen_https (443) and their certificate."""
    found: dict[str, tuple[Endpoint, ...]] = {}
    for key, port in (("listen_tls", 853), ("listen_https", 443)):
        if key in keys:
            found[key] = values[key] = endpoints(key, port)
    if "tls" in keys:
        values["tls"] = _tls(doc, keys["tls"][1], base_dir)
    listen = values.get("listen")
    taken = {e: "listen" for e in (listen if isinstance(listen, tuple) else Config.listen)}
    for key, listed in found.items():
        if listed and "tls" not in keys:
            doc.fail(keys[key][1], f"{key} needs a certificate: tls: {{cert: FILE, key: FILE}}")
        for endpoint in listed:
            if endpoint in taken:
                doc.fail(keys[key][1], f"{key}: {endpoint} is in {taken[endpoint]} already")
            taken[endpoint] = key


def _tls(doc: Doc, node: yaml.Node, base_dir: Path) -> TlsConfig:
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


def _control(doc: Doc, node: yaml.Node) -> Endpoint | None:
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


def _query_log(doc: Doc, node: yaml.Node) -> dict[str, Any]:
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


def _addresses(doc: Doc, node: yaml.Node, what: str, port: int) -> tuple[Endpoint, ...]:
    out = []
    for item in doc.sequence(node, what):
        text = doc.string(item, f"an entry of {what}")
        try:
            out.append(parse_endpoint(text, port))
        except ValueError as exc:
            doc.fail(item, f"{what}: {quote(text)} is not an address like 0.0.0.0:{port} ({exc})")
    if not out:
        doc.fail(node, f"{what} must name at least one address, like 0.0.0.0:{port}")
    return tuple(out)


def _warning_server(doc: Doc, node: yaml.Node, base_dir: Path) -> WarningServer | None:
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


def _rate_limit(doc: Doc, node: yaml.Node) -> RateLimit | None:
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


def _cache(doc: Doc, node: yaml.Node) -> CacheSettings:
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


def _size(doc: Doc, node: yaml.Node, what: str) -> int:
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


def _zones(
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
        primaries: list[Endpoint] = []
        if "primaries" in keys:
            for entry in doc.sequence(keys["primaries"][1], "zones: primaries"):
                text = doc.string(entry, "zones: primaries")
                try:
                    primaries.append(parse_endpoint(text, 53))
                except ValueError as exc:
                    doc.fail(
                        entry,
                        f"zones: primaries: {quote(text)} is not an address like 192.0.2.53:53 "
                        f"({exc})",
                    )
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
                tuple(primaries),
                tsig,
                on_expire,
                item.start_mark.line + 1,
                tuple(include_dirs),
                max_size,
            )
        )
    return tuple(zones)
