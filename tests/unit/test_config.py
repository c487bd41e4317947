"""The configuration file: every key, the defaults, and errors that name the file and line."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from resolver.core.cache import CacheSettings
from resolver.core.errors import ConfigError
from resolver.core.ratelimit import RateLimit
from resolver.sources.config import (
    Config,
    ConfigErrors,
    Endpoint,
    load_config,
    parse_config,
    resolv_conf_upstreams,
)
from resolver.sources.config_sections import parse_endpoint

SOURCE = "/etc/sinkhole/sinkhole.yaml"
BASE = Path("/etc/sinkhole")
MINIMAL = "upstreams: ['127.0.0.1:5399']\n"


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), SOURCE, BASE)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    err = info.value
    assert err.source == SOURCE
    assert str(err).startswith(f"{SOURCE}:{err.line}")
    return err


FULL = """\
listen:
  - 127.0.0.1:5353
  - "[::1]:5353"
upstreams:
  - 127.0.0.1:5300
  - "[::1]"
policies:
  - policies/*.yaml
  - /srv/extra.yaml
warning_page:
  ipv4: [192.0.2.10, 192.0.2.11]
  ipv6: ["2001:db8::10"]
  ttl: 120
cache:
  max_entries: 5000
  min_ttl: 10
  max_ttl: 3600
query_log: all
allow_clients:
  - 10.0.0.0/8
  - 192.0.2.1
  - "2001:db8::/32"
upstream_timeout: 0.5
query_timeout: 3
tcp_idle_timeout: 15.5
tcp_max_connections: 64
metrics: 127.0.0.1:9200
log_level: DEBUG
"""


def test_every_key_is_parsed() -> None:
    config = parse(FULL)
    assert config.source == SOURCE
    assert config.base_dir == BASE
    assert config.listen == (Endpoint("127.0.0.1", 5353), Endpoint("::1", 5353))
    assert config.upstreams == (Endpoint("127.0.0.1", 5300), Endpoint("::1", 53))
    assert config.policies == ("policies/*.yaml", "/srv/extra.yaml")
    assert config.answers.ipv4 == (
        ipaddress.IPv4Address("192.0.2.10"),
        ipaddress.IPv4Address("192.0.2.11"),
    )
    assert config.answers.ipv6 == (ipaddress.IPv6Address("2001:db8::10"),)
    assert config.answers.ttl == 120
    assert config.cache == CacheSettings(5000, 10, 3600)
    assert config.query_log == "all"
    assert config.allow_clients == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert config.upstream_timeout == 0.5
    assert config.query_timeout == 3.0
    assert config.tcp_idle_timeout == 15.5
    assert config.tcp_max_connections == 64
    assert config.metrics == Endpoint("127.0.0.1", 9200)
    assert config.log_level == "debug"


def test_defaults() -> None:
    config = parse(MINIMAL)
    default = Config()
    assert config.upstreams == (Endpoint("127.0.0.1", 5399),)
    assert config.listen == (Endpoint("127.0.0.1", 5353), Endpoint("::1", 5353))
    assert config.policies == ("policies/*.yaml",)
    assert config.answers == default.answers
    assert str(config.answers.ipv4[0]) == "192.0.2.80"
    assert config.answers.ttl == 60
    assert config.cache == CacheSettings()
    assert config.query_log == "blocked"
    assert config.allow_clients == default.allow_clients
    assert ipaddress.ip_address("192.168.1.5") in config.allow_clients[4]
    assert config.upstream_timeout == 1.0
    assert config.query_timeout == 4.0
    assert config.tcp_idle_timeout == 10.0
    assert config.tcp_max_connections == 512
    assert config.metrics is None
    assert config.log_level == "info"


def test_empty_file_is_the_default_configuration() -> None:
    config = parse_config("", SOURCE, BASE)
    assert config.source == SOURCE
    assert config.listen == Config().listen


def test_missing_upstreams_come_from_resolv_conf() -> None:
    config = parse("listen: ['127.0.0.1:5353']\n")
    assert config.upstreams == resolv_conf_upstreams()


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("off", "off"),
        ("'off'", "off"),
        ("no", "off"),
        ("", "off"),
        ("blocked", "blocked"),
        ("all", "all"),
    ],
)
def test_query_log_modes(text: str, mode: str) -> None:
    assert parse(MINIMAL + f"query_log: {text}\n").query_log == mode


@pytest.mark.parametrize("text", ["off", "false", ""])
def test_metrics_off(text: str) -> None:
    assert parse(MINIMAL + f"metrics: {text}\n").metrics is None


def test_metrics_default_port() -> None:
    assert parse(MINIMAL + "metrics: 127.0.0.1\n").metrics == Endpoint("127.0.0.1", 9153)


def test_single_address_may_be_written_without_a_list() -> None:
    assert parse("upstreams: 127.0.0.1:5300\n").upstreams == (Endpoint("127.0.0.1", 5300),)


# --- errors -------------------------------------------------------------------------


def test_unknown_key_names_the_key_file_and_line() -> None:
    err = error(MINIMAL + "cache:\n  max_entries: 10\nlisen: ['127.0.0.1']\n")
    assert err.line == 4
    assert "'lisen'" in err.message
    assert "listen" in err.message  # the known keys are listed


def test_unknown_nested_key() -> None:
    err = error(MINIMAL + "cache:\n  max_entires: 10\n")
    assert err.line == 3
    assert "'max_entires'" in err.message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("cache:\n  max_entries: lots\n", 3, "cache.max_entries"),
        ("cache:\n  max_entries: -1\n", 3, "cache.max_entries"),
        ("cache:\n  min_ttl: 1.5\n", 3, "cache.min_ttl"),
        ("cache: 5\n", 2, "cache"),
        ("cache:\n  min_ttl: 100\n  max_ttl: 10\n", 3, "min_ttl"),
        ("upstream_timeout: fast\n", 2, "upstream_timeout"),
        ("query_timeout: true\n", 2, "query_timeout"),
        ("tcp_idle_timeout: 0\n", 2, "tcp_idle_timeout"),
        ("tcp_max_connections: 0\n", 2, "tcp_max_connections"),
        ("tcp_max_connections: 2.5\n", 2, "tcp_max_connections"),
        ("query_log: verbose\n", 2, "query_log"),
        ("query_log: true\n", 2, "query_log"),
        ("log_level: chatty\n", 2, "log_level"),
        ("listen: {a: b}\n", 2, "listen"),
        ("listen: []\n", 2, "listen"),
        ("policies: [[a]]\n", 2, "policies"),
        ("warning_page:\n  ttl: -5\n", 3, "warning_page.ttl"),
        ("warning_page:\n  colour: red\n", 3, "colour"),
    ],
)
def test_wrong_values(text: str, line: int, words: str) -> None:
    err = error(MINIMAL + text)
    assert err.line == line
    assert words in err.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("listen", "localhost:53"),
        ("listen", "127.0.0.1:abc"),
        ("listen", "127.0.0.1:0"),
        ("listen", "127.0.0.1:70000"),
        ("listen", "'[::1'"),
        ("listen", "'[::1]5353'"),
        ("upstreams", "8.8.8"),
        ("upstreams", "'dns.example:53'"),
        ("metrics", "'nowhere:9153'"),
    ],
)
def test_bad_endpoints_name_the_key_and_line(key: str, value: str) -> None:
    text = "log_level: info\n" + f"{key}:\n  - 127.0.0.1:5353\n  - {value}\n"
    if key == "metrics":
        text = f"log_level: info\nupstreams: ['127.0.0.1:1']\n\n{key}: {value}\n"
    err = error(text)
    assert err.line == 4
    assert key in err.message


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-net", "10.0.0.0/8/8"])
def test_bad_allow_clients(value: str) -> None:
    err = error(MINIMAL + f"allow_clients:\n  - 10.0.0.0/8\n  - {value}\n")
    assert err.line == 4
    assert "allow_clients" in err.message
    assert value in err.message


@pytest.mark.parametrize(
    ("key", "value"),
    [("ipv4", "192.0.2.300"), ("ipv4", "'2001:db8::1'"), ("ipv6", "192.0.2.1"), ("ipv6", "nope")],
)
def test_bad_warning_page_addresses(key: str, value: str) -> None:
    err = error(MINIMAL + f"warning_page:\n  {key}:\n    - {value}\n")
    assert err.line == 4
    assert f"warning_page.{key}" in err.message


def test_yaml_syntax_error_has_a_line() -> None:
    err = error(MINIMAL + "listen: [127.0.0.1\nlog_level: info\n")
    assert err.line >= 2


def test_duplicate_key() -> None:
    err = error(MINIMAL + "log_level: info\nlog_level: debug\n")
    assert err.line == 3
    assert "twice" in err.message


def test_top_level_must_be_a_mapping() -> None:
    error("- listen\n- upstreams\n")


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)


# --- endpoints --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1", Endpoint("127.0.0.1", 53)),
        ("127.0.0.1:5353", Endpoint("127.0.0.1", 5353)),
        ("::1", Endpoint("::1", 53)),
        ("[::1]", Endpoint("::1", 53)),
        ("[::1]:5353", Endpoint("::1", 5353)),
        (" [2001:db8::1]:65535 ", Endpoint("2001:db8::1", 65535)),
    ],
)
def test_parse_endpoint(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text, 53) == endpoint


@pytest.mark.parametrize(
    ("endpoint", "text"),
    [(Endpoint("127.0.0.1", 53), "127.0.0.1:53"), (Endpoint("::1", 5353), "[::1]:5353")],
)
def test_endpoint_str(endpoint: Endpoint, text: str) -> None:
    assert str(endpoint) == text
    assert parse_endpoint(text, 1) == endpoint


def test_ipv6_listen_forms() -> None:
    config = parse(MINIMAL + "listen: ['[::1]:5353', '::1', '[::]']\n")
    assert config.listen == (Endpoint("::1", 5353), Endpoint("::1", 53), Endpoint("::", 53))


# --- policy globs -----------------------------------------------------------------


def test_policy_globs_are_resolved_relative_to_the_config_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "policies").mkdir(parents=True)
    for name in ("b.yaml", "a.yaml", "notes.txt"):
        (conf_dir / "policies" / name).write_text("id: x\n")
    (conf_dir / "single.yaml").write_text("id: y\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text("id: z\n")
    conf = conf_dir / "sinkhole.yaml"
    conf.write_text(
        MINIMAL
        + "policies:\n"
        + "  - policies/*.yaml\n"
        + "  - single.yaml\n"
        + "  - policies/a.yaml\n"  # already matched by the glob: listed once
        + f"  - {outside}\n"
    )
    config = load_config(conf)
    assert config.base_dir == conf_dir.resolve()
    assert config.policy_files() == [
        conf_dir.resolve() / "policies" / "a.yaml",
        conf_dir.resolve() / "policies" / "b.yaml",
        conf_dir.resolve() / "single.yaml",
        outside,
    ]


def test_policy_glob_matching_nothing(tmp_path: Path) -> None:
    config = parse_config(MINIMAL + "policies: ['none/*.yaml']\n", "c.yaml", tmp_path)
    assert config.policy_files() == []


# --- resolv.conf ------------------------------------------------------------------


def test_resolv_conf_upstreams(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(
        "# generated\n"
        "search example.com\n"
        "nameserver 192.0.2.53\n"
        "nameserver   2001:db8::53\n"
        "nameserver fe80::1%eth0\n"
        "nameserver not-an-address\n"
        "nameserver\n"
        "options edns0 trust-ad\n"
        "; nameserver 192.0.2.99\n"
    )
    assert resolv_conf_upstreams(str(path)) == (
        Endpoint("192.0.2.53", 53),
        Endpoint("2001:db8::53", 53),
        Endpoint("fe80::1", 53),
    )


def test_resolv_conf_missing(tmp_path: Path) -> None:
    assert resolv_conf_upstreams(str(tmp_path / "absent")) == ()


# --- one set of rules with the policy files ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("upstream: ['127.0.0.1:5399']\n", 1, "unknown key 'upstream' in the configuration; "
         "did you mean 'upstreams'?"),
        ("query-log: all\n", 1, "did you mean 'query_log'?"),
        ("cache: {max_entry: 10}\n", 9, "unknown key 'max_entry' in cache; "
         "did you mean 'max_entries'?"),
        ("zones: [{name: rpz.example, file: z, primary: [192.0.2.1]}]\n", 38,
         "did you mean 'primaries'?"),
        ("frobnicate: 1\n", 1, "unknown key 'frobnicate' in the configuration (known keys: "),
    ],
)  # fmt: skip
def test_unknown_keys_name_the_closest_known_key(text: str, column: int, words: str) -> None:
    err = error(MINIMAL + text)
    assert (err.line, err.column) == (2, column)
    assert words in err.message
    assert str(err).startswith(f"{SOURCE}:2:{column}: unknown key")


def test_unknown_key_in_a_file_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "sinkhole.yaml"
    path.write_text(MINIMAL + "log_level: info\nupstraems: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(
        f"{path}:3:1: unknown key 'upstraems' in the configuration; did you mean 'upstreams'?"
    )


@pytest.mark.parametrize(
    ("page", "words"),
    [
        ("{ttl: 30}", "warning_page has no address"),
        ("192.0.2.1", "warning_page must list its addresses"),
        ("{ipv4: [example.com]}", "warning_page.ipv4: 'example.com' is not an IP address"),
        ("{ipv4: ['2001:db8::1']}", "is an IPv6 address; put it under ipv6"),
        ("{ipv6: [yes]}", "warning_page.ipv6 must be text, but YAML reads yes as a yes/no value"),
        ("{ipv4: 192.0.2.1, ttl: -1}", "warning_page.ttl must be between 0 and"),
        ("{ipv4: 192.0.2.1, tll: 5}", "unknown key 'tll' in warning_page; did you mean 'ttl'?"),
    ],
)
def test_warning_page_is_read_as_in_policy_files(page: str, words: str) -> None:
    from resolver.core.errors import PolicyError
    from resolver.sources.policy_yaml import parse_policy

    in_config = error(MINIMAL + f"warning_page: {page}\n")
    with pytest.raises(PolicyError) as info:
        parse_policy(f"id: p\nwarning_page: {page}\n", "p.yaml", BASE)
    in_policy = info.value
    assert words in in_config.message
    assert in_config.message == in_policy.message
    assert in_config.line == in_policy.line == 2
    assert in_config.column == in_policy.column


def test_warning_page_without_ttl_has_the_default_ttl() -> None:
    config = parse(MINIMAL + "warning_page: {ipv4: 192.0.2.1}\n")
    assert config.answers.ttl == 60
    assert config.answers.ipv4 == (ipaddress.IPv4Address("192.0.2.1"),)
    assert config.answers.ipv6 == ()


# --- files: max_file_size, include_dirs -----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("1048576", 1 << 20),
        ("'512MiB'", 512 << 20),
        ("2 GiB", 2 << 30),
        ("64k", 64 << 10),
        ("'100M'", 100 << 20),
    ],
)
def test_max_file_size(written: str, size: int) -> None:
    config = parse(MINIMAL + f"max_file_size: {written}\nzones: [{{name: z, file: z.rpz}}]\n")
    assert config.max_file_size == size
    assert config.zones[0].max_size == size


def test_max_file_size_default() -> None:
    config = parse(MINIMAL + "zones: [{name: z, file: z.rpz}]\n")
    assert config.max_file_size == 512 << 20 == config.zones[0].max_size


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("512MB", "a size like 512MiB"),
        ("lots", "not 'lots'"),
        ("10", "at least 1KiB"),
        ("[1]", "not a list"),
    ],
)
def test_max_file_size_errors(written: str, words: str) -> None:
    err = error(MINIMAL + f"max_file_size: {written}\n")
    assert err.line == 2 and words in err.message


def test_zone_include_dirs_are_relative_to_the_configuration() -> None:
    config = parse(
        MINIMAL + "zones:\n  - {name: z, file: z.rpz, include_dirs: [feeds, /srv/rpz]}\n"
    )
    assert config.zones[0].include_dirs == (BASE / "feeds", Path("/srv/rpz"))
    assert parse(MINIMAL + "zones: [{name: z, file: z.rpz}]\n").zones[0].include_dirs == ()


def test_a_long_bad_value_gives_a_short_error() -> None:
    for text in (
        f"listen: ['{'1' * 1_000_000}:53']\n",
        f"query_log: {'x' * 1_000_000}\n",
        f"{'k' * 1_000_000}: 1\n",
        f"allow_clients: [{'n' * 1_000_000}]\n",
    ):
        err = error(text)
        assert len(str(err)) < 1000, str(err)[:300]


# --- every error in one run -----------------------------------------------------------


def test_every_top_level_key_in_error_is_reported() -> None:
    err = error(
        "listen: [localhost]\n"
        "upstreams: ['127.0.0.1:5399']\n"
        "query_log: loud\n"
        "workrs: 2\n"
        "cache: {max_entries: -1}\n"
    )
    assert isinstance(err, ConfigErrors)
    found = [(e.line, e.column) for e in err.errors]
    assert found == [(1, 10), (3, 12), (4, 1), (5, 22)]
    assert "'localhost'" in err.errors[0].message
    assert "query_log" in err.errors[1].message
    assert "did you mean 'workers'" in err.errors[2].message
    assert "cache.max_entries" in err.errors[3].message
    assert (err.line, err.column, err.message) == (1, 10, err.errors[0].message)  # the first


def test_one_error_is_a_list_of_one() -> None:
    err = error(MINIMAL + "log_level: loud\n")
    assert isinstance(err, ConfigErrors) and len(err.errors) == 1


# --- log_format and pid_file ------------------------------------------------------------


def test_log_format_and_pid_file_defaults() -> None:
    config = parse(MINIMAL)
    assert config.log_format == "auto"
    assert config.pid_file is True


@pytest.mark.parametrize("form", ["auto", "json", "console", "Console"])
def test_log_format_values(form: str) -> None:
    assert parse(MINIMAL + f"log_format: {form}\n").log_format == form.lower()


def test_log_format_error() -> None:
    err = error(MINIMAL + "log_format: pretty\n")
    assert err.line == 2 and "auto, json or console" in err.message


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("run/sinkhole.pid", BASE / "run/sinkhole.pid"),
        ("/run/other/s.pid", Path("/run/other/s.pid")),
        ("false", False),
        ("true", True),
        ("", False),
    ],
)
def test_pid_file_values(written: str, value: object) -> None:
    assert parse(MINIMAL + f"pid_file: {written}\n").pid_file == value


@pytest.mark.parametrize("written", ["/run/sinkhole/", "[a]", "'  '"])
def test_pid_file_errors(written: str) -> None:
    err = error(MINIMAL + f"pid_file: {written}\n")
    assert err.line == 2 and "pid_file" in err.message


def test_query_log_privacy_and_sampling() -> None:
    config = parse(MINIMAL + "query_log: {mode: all, client: hashed, sample: 0.01}\n")
    assert (config.query_log, config.query_log_client, config.query_log_sample) == (
        "all",
        "hashed",
        0.01,
    )
    plain = parse(MINIMAL + "query_log: blocked\n")
    assert (plain.query_log, plain.query_log_client, plain.query_log_sample) == (
        "blocked",
        "full",
        1.0,
    )
    assert "query_log.client must be one of" in error(MINIMAL + "query_log: {client: ip}\n").message
    assert "query_log.sample must be" in error(MINIMAL + "query_log: {sample: 0}\n").message
    assert "did you mean 'client'" in error(MINIMAL + "query_log: {clients: none}\n").message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1d", 86_400), ("12h", 43_200), ("30m", 1_800), ("45s", 45), ("90", 90), ("0", 0)],
)
def test_cache_stale_max(value: str, seconds: int) -> None:
    config = parse(MINIMAL + f"cache:\n  stale_max: {value}\n")
    assert config.cache.stale_max == seconds
    assert config.cache.max_entries == CacheSettings().max_entries


def test_cache_stale_max_defaults_to_a_day() -> None:
    assert parse(MINIMAL).cache.stale_max == 86_400
    assert parse(MINIMAL + "cache:\n  max_entries: 10\n").cache.stale_max == 86_400


@pytest.mark.parametrize("value", ["soon", "-1", "1w", "1.5h", "true"])
def test_cache_stale_max_must_be_a_duration(value: str) -> None:
    err = error(MINIMAL + f"cache:\n  stale_max: {value}\n")
    assert err.line == 3
    assert "cache.stale_max" in err.message


def test_hostile_client_limits_are_parsed() -> None:
    config = parse(
        MINIMAL
        + "tcp_query_timeout: 2.5\ntcp_max_per_client: 8\nmax_inflight: 500\n"
        + "rate_limit:\n  responses_per_second: 50\n  slip: 3\n  ipv4_prefix: 32\n"
        + "  ipv6_prefix: 64\n  exempt: [10.0.0.0/8, '2001:db8::/32']\n"
    )
    assert (config.tcp_query_timeout, config.tcp_max_per_client) == (2.5, 8)
    assert config.max_inflight == 500
    assert config.rate_limit == RateLimit(
        50,
        3,
        32,
        64,
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
    )


def test_hostile_client_limit_defaults() -> None:
    config = parse(MINIMAL + "rate_limit: {slip: 1}\n")
    assert (Config().tcp_query_timeout, Config().tcp_max_per_client) == (5.0, 64)
    assert Config().max_inflight == 10000
    assert Config().rate_limit == RateLimit()
    assert config.rate_limit == RateLimit(slip=1)  # the other settings keep their defaults
    assert RateLimit().responses_per_second == 1000
    assert [str(n) for n in RateLimit().exempt] == ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize("text", ["rate_limit: false\n", "rate_limit: off\n", "rate_limit:\n"])
def test_rate_limit_off(text: str) -> None:
    assert parse(MINIMAL + text).rate_limit is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tcp_query_timeout: 0\n", "tcp_query_timeout"),
        ("tcp_max_per_client: 0\n", "tcp_max_per_client"),
        ("max_inflight: many\n", "max_inflight"),
        ("rate_limit: 5\n", "rate_limit"),
        ("rate_limit: {responses_per_second: 0}\n", "rate_limit.responses_per_second"),
        ("rate_limit: {ipv4_prefix: 33}\n", "rate_limit.ipv4_prefix"),
        ("rate_limit: {ipv6_prefix: 0}\n", "rate_limit.ipv6_prefix"),
        ("rate_limit: {slip: -1}\n", "rate_limit.slip"),
        ("rate_limit: {exempt: [somewhere]}\n", "rate_limit.exempt"),
        ("rate_limit: {window: 5}\n", "window"),
    ],
)
def test_hostile_client_limit_errors(text: str, words: str) -> None:
    err = error(MINIMAL + text)
    assert err.line == 2
    assert words in err.message
