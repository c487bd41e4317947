"""The upstreams key with tls:// and https:// entries, and upstream_ca."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import trustme

from resolver.core.endpoint import Endpoint
from resolver.core.errors import ConfigError
from resolver.core.upstream_spec import SecureUpstream
from resolver.sources.config import Config, ConfigErrors, parse_config

SOURCE = "/etc/sinkhole/sinkhole.yaml"


def parse(text: str, base: Path = Path("/etc/sinkhole")) -> Config:
    return parse_config(textwrap.dedent(text), SOURCE, base)


def errors(text: str, base: Path = Path("/etc/sinkhole")) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        parse(text, base)
    found = info.value
    return found.errors if isinstance(found, ConfigErrors) else [found]


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return tmp_path


def test_plain_and_encrypted_entries_in_order() -> None:
    config = parse(
        """\
        upstreams:
          - tls://192.0.2.53#dns.example
          - https://dns.example/dns-query
          - 192.0.2.54
        """
    )
    assert config.upstreams == (
        SecureUpstream("tls", "192.0.2.53", 853, "dns.example"),
        SecureUpstream("https", "dns.example", 443, "", "/dns-query"),
        Endpoint("192.0.2.54", 53),
    )


def test_upstream_ca_is_read_relative_to_the_file(ca_dir: Path) -> None:
    config = parse("upstreams: [tls://192.0.2.53#dns.example]\nupstream_ca: ca.pem\n", ca_dir)
    [upstream] = config.upstreams
    assert isinstance(upstream, SecureUpstream)
    assert upstream.ca_file == str(ca_dir / "ca.pem")


def test_a_malformed_entry_names_the_key_the_line_and_the_forms() -> None:
    [error] = errors("upstreams:\n  - 192.0.2.53\n  - tls://192.0.2.53:99999\n")
    assert error.line == 3
    assert error.message.startswith("upstreams: 'tls://192.0.2.53:99999': port out of range")
    assert "write tls://HOST[:PORT][#NAME] or https://HOST[:PORT]/PATH[#NAME]" in error.message


def test_a_plain_entry_that_is_no_address_mentions_the_encrypted_forms() -> None:
    [error] = errors("upstreams: [dns.example]\n")
    assert "is not an address like 127.0.0.1:53" in error.message
    assert "tls://HOST[:PORT][#NAME]" in error.message


def test_an_unknown_scheme_is_refused() -> None:
    [error] = errors("upstreams: ['quic://192.0.2.53']\n")
    assert "quic:// is not a transport sinkhole forwards over" in error.message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        ("not a certificate\n", "holds no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            "cannot be read",
        ),
    ],
)
def test_a_bad_ca_file_is_an_error_at_upstream_ca(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    if content is not None:
        (tmp_path / "ca.pem").write_text(content)
    [error] = errors("upstreams: [tls://192.0.2.53#dns.example]\nupstream_ca: ca.pem\n", tmp_path)
    assert error.line == 2
    assert error.message.startswith("upstream_ca: ")
    assert reason in error.message, error.message


def test_upstream_ca_without_an_encrypted_upstream_is_an_error(ca_dir: Path) -> None:
    for text in ("upstreams: [192.0.2.53]\nupstream_ca: ca.pem\n", "upstream_ca: ca.pem\n"):
        [error] = errors(text, ca_dir)
        assert error.message.startswith("upstream_ca is the CA of tls:// and https:// upstreams")
        assert "remove upstream_ca" in error.message


def test_every_key_in_error_is_reported(ca_dir: Path) -> None:
    found = errors("upstreams: ['tls://a b']\nupstream_ca: missing.pem\nworkers: x\n", ca_dir)
    assert [e.line for e in found] == [1, 2, 3]
