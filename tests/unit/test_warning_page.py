"""The warning page's logic: status, Link, escaping, language, 404; the SNI rule; which
policy blocks a Host, decided as DNS decides."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from resolver.core.verdict import PolicyInfo
from resolver.service.warning import blocking
from resolver.sources.config import Config
from resolver.sources.policy_yaml import parse_policy
from resolver.sources.snapshot import build_snapshot
from resolver.tools.warningpage import (
    Blocked,
    Pages,
    TemplateError,
    choose_language,
    host_name,
    load_templates,
)
from resolver.tools.warningtls import certificate_names, name_covered

PAGES = Pages(load_templates(None))

INFO = PolicyInfo(
    id="kr",
    source="kr.yaml",
    title="Propaganda sites",
    authority="Korea Communications Standards Commission",
    legal_basis="National Security Act, Article 7",
    reference="KCSC decision 2010-08",
    contact="https://www.kcsc.or.kr/",
    message="Blocked by order.",
    effective_from=datetime(2010, 8, 1, tzinfo=UTC),
    authority_url="https://www.kcsc.or.kr/",
    translations=(
        ("authority", "ko", "방송통신심의위원회"),
        ("authority", "en", "Korea Communications Standards Commission"),
        ("message", "ko", "차단되었습니다."),
    ),
)


def headers(page: object) -> dict[str, str]:
    return dict(page.headers)  # type: ignore[attr-defined]


def test_a_blocked_name_gets_451_with_the_record_and_link() -> None:
    page = PAGES.render("uriminzokkiri.com", "", Blocked(INFO))
    text = page.body.decode()
    assert page.status == 451
    assert headers(page)["link"] == '<https://www.kcsc.or.kr/>; rel="blocked-by"'
    assert headers(page)["content-type"] == "text/html; charset=utf-8"
    for shown in (
        "Propaganda sites",
        "Korea Communications Standards Commission",
        "National Security Act, Article 7",
        "KCSC decision 2010-08",
        "2010-08-01",
        "Blocked by order.",
        'href="https://www.kcsc.or.kr/"',
        "uriminzokkiri.com",
    ):
        assert shown in text, shown


def test_no_link_without_an_authority_url_and_the_entry_reference_first() -> None:
    info = PolicyInfo(id="p", source="p.yaml", reference="Order 1")
    page = PAGES.render("a.example", "", Blocked(info, "Order 2"))
    assert page.status == 451 and "link" not in headers(page)
    assert "Order 2" in page.body.decode() and "Order 1" not in page.body.decode()


def test_not_blocked_is_a_plain_404() -> None:
    page = PAGES.render("free.example", "", None)
    assert page.status == 404 and "link" not in headers(page)
    assert "free.example" in page.body.decode()
    assert "Korea" not in page.body.decode()


@pytest.mark.parametrize(
    "host",
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "a.example/<script>",
        "[<script>]",
    ],
)
def test_a_hostile_host_is_escaped_and_never_blocked(host: str) -> None:
    page = PAGES.render(host, "", Blocked(INFO))
    body = page.body.decode()
    assert page.status == 404
    assert "<script" not in body and "<img" not in body
    if not host.startswith("["):
        assert "&lt;" in body


def test_policy_text_is_escaped_too() -> None:
    info = PolicyInfo(id="p", source="p.yaml", message="<b>bold</b> & more", contact="javascript:x")
    body = PAGES.render("a.example", "", Blocked(info)).body.decode()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in body
    assert 'href="javascript' not in body  # only web addresses become links


def test_korean_when_preferred_with_the_policy_texts_in_korean() -> None:
    page = PAGES.render("uriminzokkiri.com", "ko-KR,ko;q=0.9,en-US;q=0.8", Blocked(INFO))
    text = page.body.decode()
    assert headers(page)["content-language"] == "ko"
    assert '<html lang="ko">' in text
    assert "방송통신심의위원회" in text and "차단되었습니다." in text
    assert "National Security Act, Article 7" in text  # no Korean text given: the default
    english = PAGES.render("uriminzokkiri.com", "en", Blocked(INFO)).body.decode()
    assert "방송통신심의위원회" not in english and "Korea Communications" in english


@pytest.mark.parametrize(
    ("accept", "language"),
    [
        ("", "en"),
        ("ko", "ko"),
        ("ko-KR", "ko"),
        ("en-US,en;q=0.9,ko;q=0.8", "en"),
        ("fr,ko;q=0.5", "ko"),
        ("ko;q=0, en", "en"),
        ("ko;q=0.4, en;q=0.6", "en"),
        ("fr, de", "en"),
        ("*", "en"),
        ("ko;q=bad", "en"),
        ("ko;Q=0.5", "ko"),
        ("ko;level=1", "ko"),
        ("KO-kr", "ko"),
    ],
)
def test_language_choice(accept: str, language: str) -> None:
    assert choose_language(accept, {"en", "ko"}) == language


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Uriminzokkiri.COM", "uriminzokkiri.com"),
        ("uriminzokkiri.com:80", "uriminzokkiri.com"),
        ("uriminzokkiri.com.", "uriminzokkiri.com"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("192.0.2.80", None),
        ("[2001:db8::80]:80", None),
        ("", None),
        ("a b.example", None),
        ("<script>", None),
    ],
)
def test_host_name(host: str, name: str | None) -> None:
    assert host_name(host) == name


def test_a_unicode_name_is_shown_as_people_read_it() -> None:
    body = PAGES.render("xn--e1afmkfd.xn--p1ai", "", Blocked(INFO)).body.decode()
    assert "пример.рф" in body and "xn--e1afmkfd.xn--p1ai" in body


def test_operator_templates_replace_and_add_languages(tmp_path: Path) -> None:
    (tmp_path / "blocked.ja.html").write_text("JA {{ policy.authority }}")
    (tmp_path / "notfound.en.html").write_text("gone {{ name }}")
    pages = Pages(load_templates(tmp_path))
    assert pages.languages == {"en", "ko", "ja"}
    assert pages.render("a.example", "ja", Blocked(INFO)).body.startswith(b"JA Korea")
    # no Japanese 404 page: the English one, the operator's
    assert pages.render("a.example", "ja", None).body == b"gone a.example"


def test_a_broken_template_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "blocked.en.html").write_text("fine\n{% for %}\n")
    with pytest.raises(TemplateError) as info:
        Pages(load_templates(tmp_path))
    assert info.value.file == str(tmp_path / "blocked.en.html") and info.value.line == 2


# --- HTTPS: which names get a handshake ------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "covered"),
    [
        (None, True),  # no SNI: an address typed in
        ("warning.example", True),
        ("WARNING.example.", True),
        ("www.warning.example", False),
        ("uriminzokkiri.com", False),
        ("a.pages.example", True),
        ("pages.example", False),
        ("a.b.pages.example", False),
    ],
)
def test_sni_names_the_certificate_covers(server_name: str | None, covered: bool) -> None:
    assert name_covered(server_name, ("warning.example", "*.pages.example")) is covered


def test_certificate_names() -> None:
    cert = trustme.CA().issue_cert("warning.example", "*.pages.example")
    names = certificate_names(cert.cert_chain_pems[0].bytes())
    assert names == ("warning.example", "*.pages.example")


# --- which policy blocks a Host: as DNS decides -----------------------------------------


def compiled(tmp_path: Path, *policies: str) -> object:
    for number, text in enumerate(policies):
        (tmp_path / f"{number}.yaml").write_text(textwrap.dedent(text))
    config = Config(policies=("*.yaml",), base_dir=tmp_path)
    return build_snapshot(config).snapshot.policy


def test_blocking_follows_precedence_scopes_and_exemptions(tmp_path: Path) -> None:
    policy = compiled(
        tmp_path,
        """\
        id: first
        authority: First Court
        block: [a.example]
        allow: [open.a.example]
        """,
        """\
        id: second
        reference: Second order
        block:
          - a.example
          - name: lab.example
            clients: [10.99.0.0/16]
        """,
    )
    found = blocking(policy, "www.a.example", "192.0.2.1")  # type: ignore[arg-type]
    assert found is not None and found.info.id == "first"  # listed first wins
    assert blocking(policy, "open.a.example", "192.0.2.1") is None  # type: ignore[arg-type]
    assert blocking(policy, "lab.example", "192.0.2.1") is None  # type: ignore[arg-type]
    lab = blocking(policy, "lab.example", "10.99.1.2")  # type: ignore[arg-type]
    assert lab is not None and lab.reference == "Second order"
    assert blocking(policy, "lab.example", "::ffff:10.99.1.2") is not None  # type: ignore[arg-type]
    assert blocking(policy, "free.example", "10.99.1.2") is None  # type: ignore[arg-type]


def test_translated_fields_load_from_yaml() -> None:
    info = parse_policy(
        textwrap.dedent(
            """\
            id: p
            title: {ko: 제목, en: Title}
            authority: {ko: 기관}
            message: Plain
            block: [a.example]
            """
        ),
        "p.yaml",
        Path("."),
    ).info
    assert info.title == "Title" and info.text("title", "ko") == "제목"
    assert info.authority == "기관"  # no English: the first given
    assert info.text("message", "ko") == "Plain"
    assert info.languages() == {"ko", "en"}
