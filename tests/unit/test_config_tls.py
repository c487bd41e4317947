"""The encrypted listeners' keys: listen_tls, listen_https and tls."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from resolver.core.errors import ConfigError
from resolver.sources.config import Config, Endpoint, parse_config
from resolver.sources.config_sections import TlsConfig

SOURCE = "/etc/sinkhole/sinkhole.yaml"
BASE = Path("/etc/sinkhole")


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), SOURCE, BASE)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def test_off_by_default() -> None:
    config = parse("upstreams: []\n")
    assert config.listen_tls == () and config.listen_https == () and config.tls is None


def test_every_key_and_the_default_ports() -> None:
    config = parse(
        """\
        listen_tls: ["0.0.0.0", "[::]:8853"]
        listen_https: ["192.0.2.1", "[2001:db8::1]:8443"]
        tls:
          cert: tls/fullchain.pem
          key: /etc/ssl/private/dns.key
          name: DNS.Example.Net.
        """
    )
    assert config.listen_tls == (Endpoint("0.0.0.0", 853), Endpoint("::", 8853))
    assert config.listen_https == (Endpoint("192.0.2.1", 443), Endpoint("2001:db8::1", 8443))
    assert config.tls == TlsConfig(
        BASE / "tls/fullchain.pem", Path("/etc/ssl/private/dns.key"), "dns.example.net"
    )


def test_tls_alone_is_accepted() -> None:
    assert parse("tls: {cert: c.pem, key: k.pem}\n").tls is not None


@pytest.mark.parametrize("key", ["listen_tls", "listen_https"])
def test_a_listener_needs_a_certificate(key: str) -> None:
    err = error(f'{key}: ["127.0.0.1"]\n')
    assert err.line == 1
    assert "needs a certificate" in err.message and "tls:" in err.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tls: {cert: c.pem}\n", "needs a key"),
        ("tls: {key: k.pem}\n", "needs a cert"),
        ("tls: {cert: c.pem, key: k.pem, chain: x}\n", "'chain'"),
        ("tls: {cert: c.pem, key: k.pem, name: '.'}\n", "host name"),
        ("tls: {cert: c.pem, key: k.pem, name: 'a..b'}\n", "not a host name"),
        ("tls: c.pem\n", "tls"),
        ("listen_tls: [dns.example.net]\ntls: {cert: c.pem, key: k.pem}\n", "listen_tls"),
    ],
)
def test_errors_name_the_key(text: str, words: str) -> None:
    assert words in error(text).message


def test_an_address_in_two_listeners_is_an_error() -> None:
    err = error(
        """\
        listen: ["127.0.0.1:853"]
        listen_tls: ["127.0.0.1"]
        tls: {cert: c.pem, key: k.pem}
        """
    )
    assert err.line == 2 and "127.0.0.1:853 is in listen already" in err.message
    err = error(
        """\
        listen_tls: ["127.0.0.1:8443"]
        listen_https: ["127.0.0.1:8443"]
        tls: {cert: c.pem, key: k.pem}
        """
    )
    assert err.line == 2 and "in listen_tls already" in err.message
