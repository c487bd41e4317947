"""`sinkhole diff` word for word, without a server: the running side is what the control
endpoint would serve for the old files (Loaded.document, entry_lines), the new side is built
from the edited files. Long plain block: lists (policy_plain) and list files on both sides."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.core import wire
from resolver.sources.config import load_config
from resolver.sources.rules import FORMS
from resolver.sources.snapshot import BuildResult, build_snapshot
from resolver.tools import diff as diff_module
from resolver.tools.control import Loaded, entry_lines
from resolver.tools.diff_answers import groups

BULK = 2100

COURT = """\
id: court
reference: Order 1
block:
  - a.example
  - "=exact.example"
  - "*.below.example"
  - www.b.example
  - '=n5.bulk.example'
{bulk}allow:
  - open.a.example
"""

ISP = """\
id: isp
action: nxdomain
block:
  - b.example
  - {name: ref.example, reference: Order 7}
lists:
  - file: ../lists/feed.txt
"""

FEED = "c.example\nd.example\nwww.n3.bulk.example\nn8.bulk.example\n"


def bulk(skip: set[int], extra: str = "") -> str:
    return "".join(f"  - n{i}.bulk.example\n" for i in range(BULK) if i not in skip) + extra


def write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    settings = {
        "listen": ["127.0.0.1:5300"],
        "upstreams": ["127.0.0.1:5301"],
        "policies": ["policies/*.yaml"],
    }
    (root / "sinkhole.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return root / "sinkhole.yaml"


OLD = {
    "policies/10-court.yaml": COURT.format(bulk=bulk(set())),
    "policies/20-isp.yaml": ISP,
    "lists/feed.txt": FEED,
}
NEW = {
    "policies/10-court.yaml": COURT.format(
        bulk=bulk({1, 2, 1999}, '  - new.example\n  - "=n7.bulk.example"\n')
    ).replace("  - open.a.example\n", "  - open.a.example\n  - www.n4.bulk.example\n"),
    "policies/20-isp.yaml": ISP.replace("Order 7", "Order 8"),
    "lists/feed.txt": FEED.replace("d.example", "e.example") + "n1.bulk.example\n",
}


def built(root: Path) -> tuple[Any, BuildResult]:
    config = load_config(write(root, {}))
    return config, build_snapshot(config)


def running(monkeypatch: pytest.MonkeyPatch, old: BuildResult) -> None:
    """The control endpoint of a server that loaded ``old``."""
    loaded = Loaded(old, datetime(2026, 6, 1, tzinfo=UTC))
    document = json.loads(json.dumps(loaded.document()))
    body = b"".join(entry_lines(old)).split(b"\n")[:-1]
    monkeypatch.setattr(diff_module, "fetch_policies", lambda server: document)
    monkeypatch.setattr(diff_module, "fetch_entry_lines", lambda server: body)


def test_entry_lines_are_the_entries_then_the_list_names(tmp_path: Path) -> None:
    write(tmp_path, OLD)
    _, result = built(tmp_path)
    body = b"".join(entry_lines(result)).decode()
    expected = []
    for policy, report in zip(result.policies, result.reports, strict=True):
        label, tail = policy.action.label, f"\t{policy.info.id}\n"
        expected += [f"{e.name}\t{FORMS[e.scope]}\t{e.action.label}{tail}" for e in policy.entries]
        expected += [f"{wire.name_to_text(n)}\tsubtree\t{label}{tail}" for n in report.listed]
    assert body == "".join(expected)
    assert body.count("\n") == BULK + 6 + 2 + 4
    assert body.startswith(
        "a.example\tsubtree\twarning-page\tcourt\n"
        "exact.example\texact\twarning-page\tcourt\n"
        "below.example\tbelow\twarning-page\tcourt\n"
        "www.b.example\tsubtree\twarning-page\tcourt\n"
        "n5.bulk.example\texact\twarning-page\tcourt\n"
        "n0.bulk.example\tsubtree\twarning-page\tcourt\n"
    )
    assert "open.a.example\tsubtree\tallow\tcourt\nb.example\tsubtree\tnxdomain\tisp\n" in body
    assert "ref.example\tsubtree\tnxdomain\tisp\n" in body


EXPECTED: list[str] = [
    "running server http://127.0.0.1:9154 (loaded 2026-06-01T00:00:00+00:00) against <config>",
    "policies: 0 added, 0 removed, 2 changed",
    "  ~ court  <dir>/new/policies/10-court.yaml  sha256 8536cfe72aa933e7 -> 8764337db6c9b3b1",
    "  ~ isp  <dir>/new/policies/20-isp.yaml  sha256 c3f4370044993a7d -> da3da7ea6bc60e13",
    "names: 2 newly blocked, 4 unblocked, 1 changed (names in the table: 2110 -> 2110)",
    "newly blocked (2):",
    "  + e.example (and names under it): not blocked -> nxdomain by isp",
    "  + new.example (and names under it): not blocked -> warning-page by court",
    "unblocked (4):",
    "  - d.example (and names under it): nxdomain by isp -> not blocked",
    "  - n1999.bulk.example (and names under it): warning-page by court -> not blocked",
    "  - n2.bulk.example (and names under it): warning-page by court -> not blocked",
    "  - www.n4.bulk.example (and names under it): warning-page by court -> exempted by court",
    "changed (1):",
    "  ~ n1.bulk.example (and names under it): warning-page by court -> nxdomain by isp",
]


def test_what_a_reload_would_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "old", OLD)
    write(tmp_path / "new", NEW)
    _, old = built(tmp_path / "old")
    config, new = built(tmp_path / "new")
    running(monkeypatch, old)
    found = diff_module.diff(config, new, "http://127.0.0.1:9154")
    text = [
        line.replace(str(tmp_path), "<dir>")
        for line in diff_module.render_text(found, "<config>", 50)
    ]
    assert text == EXPECTED
    document = found.as_dict(None)
    assert json.loads(json.dumps(document).replace(str(tmp_path), "<dir>")) == EXPECTED_JSON


EXPECTED_JSON: dict[str, Any] = {
    "server": "http://127.0.0.1:9154",
    "server_loaded_at": "2026-06-01T00:00:00+00:00",
    "same": False,
    "policies": {
        "added": [],
        "removed": [],
        "changed": [
            {
                "id": "court",
                "file": "<dir>/new/policies/10-court.yaml",
                "sha256": "8764337db6c9b3b127e05b21c5facd7199836fd8c9a10a296d616b736063d446",
                "sha256_before": "8536cfe72aa933e7668c37ef4cbd6b25632295e40bb72e80fb7e2f33dca6a3f1",
            },
            {
                "id": "isp",
                "file": "<dir>/new/policies/20-isp.yaml",
                "sha256": "da3da7ea6bc60e13cf31ca509cbcb02f98f5b7f684d7c46c7957838ebcd33a19",
                "sha256_before": "c3f4370044993a7d4c42f2a8ea16aae6df905585213357884c1d9623a126bee9",
            },
        ],
        "moved": [],
    },
    "names_before": 2110,
    "names_after": 2110,
    "blocked": {
        "count": 2,
        "names": [
            {
                "name": "e.example",
                "kind": "blocked",
                "before": None,
                "after": {"action": "nxdomain", "policy": "isp"},
            },
            {
                "name": "new.example",
                "kind": "blocked",
                "before": None,
                "after": {"action": "warning-page", "policy": "court"},
            },
        ],
    },
    "unblocked": {
        "count": 4,
        "names": [
            {
                "name": "d.example",
                "kind": "unblocked",
                "before": {"action": "nxdomain", "policy": "isp"},
                "after": None,
            },
            {
                "name": "n1999.bulk.example",
                "kind": "unblocked",
                "before": {"action": "warning-page", "policy": "court"},
                "after": None,
            },
            {
                "name": "n2.bulk.example",
                "kind": "unblocked",
                "before": {"action": "warning-page", "policy": "court"},
                "after": None,
            },
            {
                "name": "www.n4.bulk.example",
                "kind": "unblocked",
                "before": {"action": "warning-page", "policy": "court"},
                "after": {"action": "allow", "policy": "court"},
            },
        ],
    },
    "changed": {
        "count": 1,
        "names": [
            {
                "name": "n1.bulk.example",
                "kind": "changed",
                "before": {"action": "warning-page", "policy": "court"},
                "after": {"action": "nxdomain", "policy": "isp"},
            }
        ],
    },
    "answers": {"count": 0, "causes": [], "not_compared": 0, "queries": 0},
}


def test_policies_in_another_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every name is compared: the policies' order decides between them."""
    write(tmp_path / "old", OLD)
    moved = {**OLD, "policies/05-isp.yaml": ISP}
    del moved["policies/20-isp.yaml"]
    write(tmp_path / "new", moved)
    _, old = built(tmp_path / "old")
    config, new = built(tmp_path / "new")
    running(monkeypatch, old)
    found = diff_module.diff(config, new, "http://127.0.0.1:9154")
    text = [
        line.replace(str(tmp_path), "<dir>")
        for line in diff_module.render_text(found, "<config>", None)
    ]
    assert text == EXPECTED_MOVED


EXPECTED_MOVED: list[str] = [
    "running server http://127.0.0.1:9154 (loaded 2026-06-01T00:00:00+00:00) against <config>",
    "policies: 0 added, 0 removed, 0 changed",
    "  order changed: isp, court",
    "names: 0 newly blocked, 0 unblocked, 1 changed (names in the table: 2110 -> 2110)",
    "changed (1):",
    "  ~ n8.bulk.example (and names under it): warning-page by court -> nxdomain by isp",
]


def test_the_names_asked_for_their_answers(tmp_path: Path) -> None:
    """One name per verdict, and each entry of a changed policy on its own (at most
    PER_POLICY of them), not the names a change of decision already lists."""
    write(tmp_path, NEW)
    _, result = built(tmp_path)
    changed = {wire.text_to_name(n) for n in ("a.example", "n5.bulk.example")}
    court = next(r.named for r in result.reports if r.id == "court")
    found, not_compared = groups(result, changed, court)
    shown = [
        (
            g.verdict.policy_id,
            g.verdict.action.label,
            wire.name_to_text(g.probe),
            g.count,
            sorted(g.examples)[:3],
        )
        for g in found
    ]
    assert (shown[:4], shown[-2:], len(shown), not_compared) == EXPECTED_GROUPS


EXPECTED_GROUPS: Any = (
    [
        (
            "court",
            "warning-page",
            "n200.bulk.example",
            1900,
            ["n200.bulk.example", "n201.bulk.example", "n202.bulk.example"],
        ),
        ("isp", "nxdomain", "b.example", 5, ["b.example", "c.example", "e.example"]),
        ("isp", "nxdomain", "ref.example", 1, ["ref.example"]),
        ("court", "warning-page", "exact.example", 1, ["exact.example"]),
    ],
    [
        ("court", "warning-page", "n198.bulk.example", 1, ["n198.bulk.example"]),
        ("court", "warning-page", "n199.bulk.example", 1, ["n199.bulk.example"]),
    ],
    203,
    0,
)
