"""The configuration file: the Config dataclass, its top-level keys (an unknown one is an
error) and the loader, every error with file and line. The sections with a syntax of their
own are read by resolver.sources.config_sections."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resolver.core.cache import CacheSettings
from resolver.core.endpoint import Endpoint
from resolver.core.errors import ConfigError, quote
from resolver.core.ratelimit import RateLimit
from resolver.core.verdict import Answers
from resolver.sources import files
from resolver.sources.config_sections import (
    TlsConfig,
    WarningServer,
    ZoneConfig,
    parse_endpoint,
    read_cache,
    read_control,
    read_endpoints,
    read_pid_file,
    read_query_log,
    read_rate_limit,
    read_size,
    read_tls,
    read_warning_server,
    read_zones,
)
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
LOG_FORMATS = ("auto", "json", "console")  # auto: console on a terminal, JSON lines otherwise

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
        like = "127.0.0.1:53 or [::1]:53"
        return read_endpoints(doc, keys[key][1], key, default_port, like)

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
        values["cache"] = read_cache(doc, keys["cache"][1])
    if "query_log" in keys:
        values.update(read_query_log(doc, keys["query_log"][1]))
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
        values["rate_limit"] = read_rate_limit(doc, keys["rate_limit"][1])
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
        values["control"] = read_control(doc, keys["control"][1])
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
        max_size = values["max_file_size"] = read_size(
            doc, keys["max_file_size"][1], "max_file_size"
        )
    if "zones" in keys:
        values["zones"] = read_zones(doc, keys["zones"][1], base_dir, max_size)
    if "udp_batch" in keys:
        _, node = keys["udp_batch"]
        flag = doc.value(node)
        if not isinstance(flag, bool):
            doc.fail(node, f"udp_batch must be true or false, not {describe(flag)}")
        values["udp_batch"] = flag
    _encrypted(doc, keys, values, endpoints, base_dir)
    if "warning_server" in keys:
        values["warning_server"] = read_warning_server(doc, keys["warning_server"][1], base_dir)
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
        values["pid_file"] = read_pid_file(doc, keys["pid_file"][1], base_dir)
    if "state_dir" in keys:
        _, node = keys["state_dir"]
        text = doc.string(node, "state_dir (a directory)").strip()
        if not text:
            doc.fail(node, "state_dir must name a directory, like /var/lib/sinkhole")
        state = Path(text)
        values["state_dir"] = state if state.is_absolute() else base_dir / state
    return Config(**values)  # type: ignore[arg-type]


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
        values["tls"] = read_tls(doc, keys["tls"][1], base_dir)
    listen = values.get("listen")
    taken = {e: "listen" for e in (listen if isinstance(listen, tuple) else Config.listen)}
    for key, listed in found.items():
        if listed and "tls" not in keys:
            doc.fail(keys[key][1], f"{key} needs a certificate: tls: {{cert: FILE, key: FILE}}")
        for endpoint in listed:
            if endpoint in taken:
                doc.fail(keys[key][1], f"{key}: {endpoint} is in {taken[endpoint]} already")
            taken[endpoint] = key
