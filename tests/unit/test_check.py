"""`sinkhole check` as a function: every error (one per broken file), and each kind of warning
at the file and line of the entry it is about."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from resolver.core.errors import PolicyError
from resolver.sources.config import load_config
from resolver.tools.check import reload_errors, reload_summary, render_text, run_check
from resolver.tools.diagnostics import Diagnostic

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def setup(tmp_path: Path, policies: dict[str, str], **config: object) -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    for name, text in policies.items():
        (tmp_path / "policies" / name).write_text(textwrap.dedent(text))
    settings: dict[str, object] = {
        "listen": ["127.0.0.1:5300"],
        "upstreams": ["127.0.0.1:5301"],
        "policies": ["policies/*.yaml"],
    }
    settings.update(config)
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def warnings(tmp_path: Path, policies: dict[str, str], **config: object) -> list[Diagnostic]:
    result = run_check(setup(tmp_path, policies, **config), NOW)
    assert result.errors == [], result.errors
    return result.warnings


def at(diagnostics: list[Diagnostic], file: Path, line: int) -> list[str]:
    """The messages of the diagnostics at ``file``:``line``."""
    return [d.message for d in diagnostics if d.file == str(file) and d.line == line]


def test_a_clean_configuration_has_nothing_to_say(tmp_path: Path) -> None:
    result = run_check(setup(tmp_path, {"p.yaml": "id: p\nblock: [a.example, b.example]\n"}), NOW)
    assert result.diagnostics == []
    assert result.names == 2
    assert list(render_text(result))[-1].startswith("ok: ")


def test_every_broken_file_is_reported_and_checking_goes_on(tmp_path: Path) -> None:
    path = setup(
        tmp_path,
        {
            "10-url.yaml": "id: url\nblock:\n  - twitter.com/uriminzok\n",
            "20-good.yaml": "id: good\nblock:\n  - good.example\n  - www.good.example\n",
            "30-yaml.yaml": "id: yaml\nblock:\n  - [unclosed\n",
            "40-action.yaml": "id: act\naction: explode\nblock: [x.example]\n",
        },
    )
    result = run_check(path, NOW)
    errors = {Path(d.file).name: d for d in result.errors}
    assert set(errors) == {"10-url.yaml", "30-yaml.yaml", "40-action.yaml"}
    assert errors["10-url.yaml"].line == 3
    assert "whole names" in errors["10-url.yaml"].message
    assert errors["40-action.yaml"].line == 2
    # The good file was still read: its warning is there.
    good = tmp_path / "policies" / "20-good.yaml"
    assert any("already covered by good.example" in m for m in at(result.warnings, good, 4))
    lines = list(render_text(result))
    assert lines[-1] == "failed: 3 errors, 1 warning"
    assert [line.split(": ")[1] for line in lines[:3]] == ["error"] * 3


def test_a_policy_id_used_twice_is_an_error_at_the_second_file(tmp_path: Path) -> None:
    result = run_check(
        setup(tmp_path, {"a.yaml": "id: same\nblock: [a.example]\n", "b.yaml": "id: same\n"}),
        NOW,
    )
    [error] = result.errors
    assert error.file == str(tmp_path / "policies" / "b.yaml")
    assert error.line == 1
    assert "already used by" in error.message


def test_a_broken_configuration_is_one_error(tmp_path: Path) -> None:
    path = setup(tmp_path, {}, upstream_timout=1)
    result = run_check(path, NOW)
    [error] = result.errors
    assert error.file == str(path)
    assert "'upstream_timout'" in error.message


@pytest.mark.parametrize("address", ["192.0.2.1:9154", "0.0.0.0:9154", "[2001:db8::1]:9154"])
def test_the_control_endpoint_must_be_on_loopback(tmp_path: Path, address: str) -> None:
    path = setup(tmp_path, {}, control=address)
    [error] = run_check(path, NOW).errors
    assert error.file == str(path)
    assert "control" in error.message and "loopback" in error.message


@pytest.mark.parametrize("address", ["127.0.0.1:9154", "[::1]:9154", "127.0.0.2"])
def test_a_loopback_control_endpoint_is_fine(tmp_path: Path, address: str) -> None:
    path = setup(tmp_path, {}, control=address)
    assert run_check(path, NOW).errors == []
    config = load_config(path)
    assert config.control is not None
    assert config.control.port == 9154


def test_the_same_entry_in_two_policies(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        {
            "10-a.yaml": "id: first\nblock:\n  - dup.example\n",
            "20-b.yaml": "id: second\nblock:\n  - other.example\n  - dup.example\n",
        },
    )
    [message] = at(found, tmp_path / "policies" / "20-b.yaml", 4)
    assert message.startswith("duplicate entry: dup.example")
    assert "'first'" in message and "10-a.yaml:3" in message


def test_a_conflict_between_policies_says_which_wins(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        {
            "10-a.yaml": "id: court\nblock:\n  - both.example\n",
            "20-b.yaml": "id: isp\naction: nxdomain\nblock:\n  - both.example\n",
        },
    )
    [message] = at(found, tmp_path / "policies" / "20-b.yaml", 4)
    assert message.startswith("conflict: both.example is nxdomain here but warning-page")
    assert "'court'" in message
    assert "listed first" in message and "warning-page wins" in message


def test_a_name_blocked_and_exempted_says_the_exemption_wins(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        {
            "10-a.yaml": "id: court\nblock:\n  - open.example\n",
            "20-b.yaml": "id: isp\nallow:\n  - open.example\n",
        },
    )
    [message] = at(found, tmp_path / "policies" / "20-b.yaml", 3)
    assert "exempted here and blocked (warning-page)" in message
    assert "the exemption wins" in message


def test_an_entry_a_broader_one_covers_with_the_same_action(tmp_path: Path) -> None:
    policy = """\
        id: p
        block:
          - a.example
          - www.a.example
          - name: api.a.example
            action: nxdomain
          - "*.b.example"
          - x.y.b.example
        """
    found = warnings(tmp_path, {"p.yaml": policy})
    file = tmp_path / "policies" / "p.yaml"
    [message] = at(found, file, 4)
    assert message.startswith("www.a.example is already covered by a.example (line 3)")
    assert at(found, file, 5) == []  # another action: not redundant
    assert any("covered by *.b.example" in m for m in at(found, file, 8))
    # The column points at the name.
    assert [d.column for d in found if d.line == 4] == [5]


def test_an_entry_under_an_exemption_is_not_redundant(tmp_path: Path) -> None:
    """a.example blocked, b.a.example exempted, c.b.a.example blocked again: needed."""
    policy = """\
        id: p
        block:
          - a.example
          - c.b.a.example
        """
    found = warnings(
        tmp_path, {"10-p.yaml": policy, "20-q.yaml": "id: q\nallow:\n  - b.a.example\n"}
    )
    assert at(found, tmp_path / "policies" / "10-p.yaml", 4) == []


def test_an_exemption_of_nothing(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        {"p.yaml": "id: p\nblock:\n  - a.example\nallow:\n  - www.a.example\n  - typo.exmaple\n"},
    )
    file = tmp_path / "policies" / "p.yaml"
    assert at(found, file, 5) == []
    [message] = at(found, file, 6)
    assert "exempts nothing" in message


def test_expired_and_future_policies(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        {
            "old.yaml": "id: old\nexpires: 2026-01-01\nblock: [old.example]\n",
            "new.yaml": "id: new\neffective_from: 2027-03-01\nblock: [new.example]\n",
            "now.yaml": "id: now\neffective_from: 2026-01-01\nexpires: 2027-01-01\n"
            "block: [now.example]\n",
        },
    )
    [expired] = at(found, tmp_path / "policies" / "old.yaml", 2)
    assert "expired on 2026-01-01 00:00 UTC" in expired
    [future] = at(found, tmp_path / "policies" / "new.yaml", 2)
    assert "comes into force on 2027-03-01 00:00 UTC" in future
    assert not any(d.file.endswith("now.yaml") for d in found)


def test_list_bad_lines_are_counted_with_the_first_few(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    bad = [f"bad line {i}" for i in range(8)]
    (tmp_path / "lists" / "ads.txt").write_text("ok.example\n" + "\n".join(bad) + "\n")
    found = warnings(tmp_path, {"p.yaml": "id: p\nlists:\n  - file: ../lists/ads.txt\n"})
    [message] = [d for d in found if d.file.endswith("ads.txt")]
    assert message.line == 2  # the first bad line
    assert message.message.startswith("8 lines skipped")
    assert "line 2:" in message.message and "line 6:" in message.message
    assert "line 7:" not in message.message  # only the first five


def test_list_names_against_entries_and_other_lists(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.txt").write_text(
        "one.example\ntwo.example\none.example\nwww.two.example\nopen.example\n"
    )
    (tmp_path / "lists" / "b.txt").write_text("two.example\nthree.example\n")
    found = warnings(
        tmp_path,
        {
            "10-a.yaml": "id: a\nlists:\n  - file: ../lists/a.txt\n",
            "20-b.yaml": "id: b\naction: nxdomain\nallow: [open.example]\n"
            "lists:\n  - file: ../lists/b.txt\n",
        },
    )
    a_messages = at(found, tmp_path / "policies" / "10-a.yaml", 3)
    assert any("1 name listed more than once" in m and "lines 1, 3" in m for m in a_messages)
    assert any(
        "already covered by a broader name" in m and "www.two.example (line 4)" in m
        for m in a_messages
    )
    assert any("exempted by an allow entry" in m and "open.example" in m for m in a_messages)
    [b_conflict] = at(found, tmp_path / "policies" / "20-b.yaml", 5)
    assert "also blocked by policy 'a' with action warning-page" in b_conflict
    assert "policy 'a' is listed first" in b_conflict and "warning-page wins" in b_conflict
    assert "two.example" in b_conflict


def test_json_shape(tmp_path: Path) -> None:
    result = run_check(setup(tmp_path, {"p.yaml": "id: p\nblock: [a.example, www.a.example]\n"}))
    document = result.as_dict()
    assert document["ok"] is True
    [warning] = document["warnings"]
    assert set(warning) == {"file", "line", "column", "severity", "message"}
    assert warning["severity"] == "warning"
    assert document["policies"][0]["id"] == "p"


def test_reload_errors_lists_every_broken_file(tmp_path: Path) -> None:
    path = setup(
        tmp_path,
        {
            "a.yaml": "id: a\nblock: [http://x.example/]\n",
            "b.yaml": "id: b\nblock: [good.example]\n",
            "c.yaml": "id: c\nblock:\n  - 10.0.0.1\n",
        },
    )
    config = load_config(path)
    first = PolicyError("first", "a.yaml", 2, 1)
    errors = reload_errors(path, config, first)
    assert sorted(Path(e.source).name for e in errors) == ["a.yaml", "c.yaml"]
    assert all(e.line for e in errors)


def test_reload_errors_lists_every_configuration_error(tmp_path: Path) -> None:
    path = setup(tmp_path, {"a.yaml": "id: a\nblock: [a.example]\n"})
    config = load_config(path)
    path.write_text(path.read_text() + "query_log: loud\nworkers: none\n")
    errors = reload_errors(path, config, PolicyError("first", str(path), 7, 12))
    assert [(e.line, e.column) for e in errors] == [(7, 12), (8, 10)]


def test_reload_summary() -> None:
    one = [PolicyError("bad name", "p.yaml", 3, 5)]
    assert reload_summary(one) == "the previous policy stays in force: p.yaml:3:5: bad name"
    two = [*one, PolicyError("cannot read", "q.yaml")]
    assert reload_summary(two) == (
        "2 errors, the previous policy stays in force; the first: p.yaml:3:5: bad name"
    )


def test_a_file_without_a_line_is_named_alone() -> None:
    assert Diagnostic("c.yaml", 0, 0, "error", "it does not exist").text() == (
        "c.yaml: error: it does not exist"
    )
    assert Diagnostic("c.yaml", 4, 2, "warning", "w").text() == "c.yaml:4:2: warning: w"


ZONE = """\
$TTL 300
@ SOA ns. host. 1 3600 600 86400 60
@ NS ns.
gone.example CNAME .
ns.example.rpz-nsdname CNAME .
"""


def test_rpz_zones_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "good.zone").write_text(ZONE)
    (tmp_path / "bad.zone").write_text(ZONE + "24.0.0.10.rpz-client-ip CNAME .\n")
    path = setup(
        tmp_path,
        {"p.yaml": "id: p\nblock: [a.example]\n"},
        zones=[
            {"name": "good.test", "file": "good.zone"},
            {"name": "bad.test", "file": "bad.zone"},
        ],
    )
    result = run_check(path, NOW)
    [error] = result.errors
    assert (error.file, error.line) == (str(tmp_path / "bad.zone"), 6)
    assert "rpz-client-ip" in error.message
    [warning] = [d for d in result.warnings if d.file == str(tmp_path / "good.zone")]
    assert warning.line == 5
    assert "NSDNAME" in warning.message
