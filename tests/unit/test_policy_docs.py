"""The bundled policies and the policy guide (policies/README.md) stay valid and truthful.

Every example policy loads, is in force at a fixed instant (AT, so the result does
not change with the calendar) and reads its lists without a bad line; every ```yaml
block of the guide is a complete policy that loads; the error messages the guide
quotes are the ones the checker prints.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from resolver.core.errors import PolicyError
from resolver.sources.lists import FORMATS, ListReport, read_list
from resolver.sources.policy_entries import ALLOW_ENTRY_KEYS, BLOCK_ENTRY_KEYS
from resolver.sources.policy_lists import LIST_KEYS
from resolver.sources.policy_yaml import POLICY_KEYS, PolicyFile, load_policy, parse_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
GUIDE = POLICIES / "README.md"
EXAMPLES = sorted(POLICIES.rglob("*.yaml"))
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.M | re.S)
TEXT_BLOCK = re.compile(r"^```text\n(.*?)^```$", re.M | re.S)
# The instant the examples are checked at: after the latest effective_from among them
# (school-network.yaml, 2026-09-01). A new example starting later moves it.
AT = datetime(2026, 10, 1, tzinfo=UTC)


def guide_blocks() -> list[str]:
    return YAML_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def check_lists(policy: PolicyFile) -> None:
    for ref in policy.lists:
        if ref.url is not None:
            continue  # fetched by a running server; the guide's addresses are examples
        report = ListReport(str(ref.path))
        names = list(read_list(ref, report))
        assert names, ref
        assert report.bad == 0, report.examples


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 4
    assert POLICIES / "kr-national-security.yaml" in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_policy_loads_and_is_in_force(path: Path) -> None:
    policy = load_policy(path)
    assert policy.info.active(AT), (policy.info.effective_from, policy.info.expires)
    assert policy.entries or policy.lists
    check_lists(policy)


def test_school_policy_waits_for_its_start() -> None:
    """The dates are read, not ignored: the school policy is off the minute before it starts."""
    info = load_policy(POLICIES / "school-network.yaml").info
    start = datetime(2026, 9, 1, 7, 0, tzinfo=timezone(timedelta(hours=9)))
    assert info.effective_from == start
    assert not info.active(start - timedelta(minutes=1))
    assert info.active(start) and info.active(AT)


def test_example_ids_are_unique() -> None:
    ids = [load_policy(path).info.id for path in EXAMPLES]
    assert len(ids) == len(set(ids))


def test_guide_has_an_example_for_every_feature() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= 12
    text = "\n".join(blocks)
    used = set(re.findall(r"^[ -]*([a-z_][a-z0-9_]*):", text, re.M))
    # ca_file names a certificate of the reader's own: the guide describes it in words.
    missing = (POLICY_KEYS | BLOCK_ENTRY_KEYS | ALLOW_ENTRY_KEYS | LIST_KEYS) - used - {"ca_file"}
    assert not missing
    for fmt in FORMATS:
        assert f"format: {fmt}" in text or fmt == "domains"
    for action in ("warning-page", "nxdomain", "drop", "redirect", "allow"):
        assert f"action: {action}" in text


@pytest.mark.parametrize("number", range(len(guide_blocks())))
def test_guide_yaml_block_is_a_valid_policy(number: int) -> None:
    text = guide_blocks()[number]
    try:
        policy = parse_policy(text, f"{GUIDE.name} block {number + 1}", POLICIES)
    except PolicyError as exc:  # pragma: no cover - shown when the guide breaks
        pytest.fail(f"{exc}\n{text}")
    assert policy.entries or policy.lists
    check_lists(policy)


# The inputs behind the messages the guide quotes; "(...)" stands for the YAML
# parser's own words and the list of known keys.
QUOTED = {
    "alias": "id: p\nblock:\n  - *.example.com\n",
    "yes/no": "id: p\nblock:\n  - no\n",
    "tab": "id: p\nblock:\n\t- a.example\n",
    "url": "id: p\nblock:\n  - https://twitter.com/uriminzok\n",
    "port": "id: p\nblock:\n  - example.com:443\n",
    "ip": "id: p\nblock:\n  - 192.0.2.1\n",
    "suffix": "id: p\nblock:\n  - co.kr\n",
    "zone": "id: p\neffective_from: 2026-01-01T09:00:00\n",
    "redirect": "id: p\naction: redirect\nblock: [a.example]\n",
    "network": "id: p\nclients: [10.1.2.3/8]\n",
    "duplicate": "id: p\nblock:\n  - a.example\n  - A.example.\n",
    "unknown key": "id: p\ntitel: x\n",
}


@pytest.mark.parametrize("case", sorted(QUOTED))
def test_guide_quotes_the_real_messages(case: str) -> None:
    quoted = "\n".join(TEXT_BLOCK.findall(GUIDE.read_text(encoding="utf-8")))
    with pytest.raises(PolicyError) as info:
        parse_policy(QUOTED[case], "policies/p.yaml", POLICIES)
    message = str(info.value)
    message = re.sub(r"not valid YAML \([^)]*\)", "not valid YAML (...)", message)
    message = re.sub(r"\(known keys: [^)]*\)", "(known keys: ...)", message)
    assert message in quoted.splitlines()
