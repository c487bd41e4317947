"""The warning_server key of the configuration: addresses, templates, TLS, errors with lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from resolver.core.endpoint import Endpoint
from resolver.core.errors import ConfigError
from resolver.sources.config import parse_config
from resolver.sources.config_sections import WarningServer, WarningTls

BASE = Path("/etc/sinkhole")


def parse(text: str) -> WarningServer | None:
    return parse_config(textwrap.dedent(text), "c.yaml", BASE).warning_server


def test_off_when_absent_or_empty() -> None:
    assert parse("query_log: off\n") is None
    assert parse("warning_server:\n") is None


def test_every_key() -> None:
    server = parse(
        """\
        warning_server:
          listen: ["0.0.0.0:80", "[::]"]
          templates: templates
          tls: {listen: ["0.0.0.0"], cert: /srv/w.pem, key: w.key}
        """
    )
    assert server == WarningServer(
        (Endpoint("0.0.0.0", 80), Endpoint("::", 80)),
        BASE / "templates",
        WarningTls((Endpoint("0.0.0.0", 443),), Path("/srv/w.pem"), BASE / "w.key"),
    )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("warning_server: {templates: t}\n", 1, "needs a listen"),
        ("warning_server:\n  listen: [warning.example]\n", 2, "not an address"),
        ("warning_server:\n  listen: []\n", 2, "at least one address"),
        ("warning_server:\n  listen: [0.0.0.0]\n  tls: {cert: a, key: b}\n", 3, "needs a listen"),
        ("warning_server:\n  listen: [0.0.0.0]\n  tsl: {}\n", 3, "did you mean 'tls'"),
    ],
)
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert info.value.line == line and words in info.value.message
