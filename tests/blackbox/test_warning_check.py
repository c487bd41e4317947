"""`sinkhole check` and the warning server's settings: accepted, and each broken part named."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from blackbox.test_check import check, errors, write_setup

pytestmark = pytest.mark.blackbox

POLICY = """\
id: translated
title: {ko: 제목, en: Title}
authority: {ko: 방송통신심의위원회, en: Korea Communications Standards Commission}
authority_url: https://www.kcsc.or.kr/
message:
  ko: 차단되었습니다.
  en: Blocked.
block: [a.example]
"""


def test_check_accepts_the_warning_server_and_translations(tmp_path: Path) -> None:
    cert = trustme.CA().issue_cert("warning.example")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "warning.pem")
    cert.private_key_pem.write_to_path(tmp_path / "warning.key")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "blocked.ja.html").write_text("{{ policy.title }}\n")
    config = write_setup(
        tmp_path,
        POLICY,
        warning_server={
            "listen": ["0.0.0.0:80", "[::]:80"],
            "templates": "templates",
            "tls": {"listen": ["0.0.0.0:443"], "cert": "warning.pem", "key": "warning.key"},
        },
    )
    result = check("--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")


def test_check_names_a_broken_template_and_a_missing_certificate(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "blocked.en.html").write_text("<p>\n{% if %}\n")
    config = write_setup(
        tmp_path,
        POLICY,
        warning_server={
            "listen": ["0.0.0.0:80"],
            "templates": "templates",
            "tls": {"listen": ["0.0.0.0:443"], "cert": "none.pem", "key": "none.key"},
        },
    )
    result = check("--config", str(config))
    assert result.returncode == 1
    found = {(Path(e["file"]).name, e["line"]): e["message"] for e in errors(result)}
    assert "template" in found[("blocked.en.html", "2")]
    [tls] = [m for (file, _), m in found.items() if file == "sinkhole.yaml"]
    assert "none.pem" in tls and "cannot read" in tls


def test_check_names_a_bad_warning_server_key_with_its_line(tmp_path: Path) -> None:
    config = write_setup(tmp_path, POLICY, warning_server={"listen": ["warning.example:80"]})
    result = check("--config", str(config))
    assert result.returncode == 1
    [error] = errors(result)
    assert error["line"] != "0" and "warning_server.listen" in error["message"]


def test_check_names_a_bad_translation(tmp_path: Path) -> None:
    config = write_setup(tmp_path, "id: p\nmessage: {korean!: x}\nblock: [a.example]\n")
    result = check("--config", str(config))
    [error] = errors(result)
    assert (error["line"], error["col"]) == ("2", "11")
    assert "language tag" in error["message"]
