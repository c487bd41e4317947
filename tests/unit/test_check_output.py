"""`sinkhole check` word for word: every kind of warning about entries and list names, in the
order given, at its file, line and column, on policies whose block: list is long enough to be
read as a plain list (policy_plain) and on ordinary ones; text and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from resolver.tools.check import render_text, run_check

NOW = datetime(2026, 6, 1, tzinfo=UTC)
BULK = 2100  # plain names in the court's block: list, past policy_yaml.COMPACT

COURT_HEAD = """\
id: court
reference: Order 1
block:
  - a.example
  - www.a.example
  - "=exact.example"
  - exact.example
  - "*.below.example"
  - x.y.below.example
  - www.ref.example
  - "nx.a.example"
  - deep.www.c.example
  - '=only.example'
  - www.only.example
"""

COURT_TAIL = """\
allow:
  - open.a.example
  - nothing.example
  - www.b.example
"""

ISP = """\
id: isp
action: nxdomain
block:
  - a.example
  - b.example
  - www.b.example
  - n7.bulk.example
  - "*.exact.example"
  - x.d.example
lists:
  - file: ../lists/feed.txt
  - file: ../lists/hosts.txt
    format: hosts
"""

SAME = """\
id: same
reference: Order 1
block:
  - {name: ref.example, reference: Order 2}
  - name: www.ref.example
    action: nxdomain
  - c.example
  - n9.bulk.example
  - www.a.example
allow:
  - www.n11.bulk.example
"""

SCHOOL = """\
id: school
clients: [10.0.0.0/8]
expires: 2027-01-01
allow:
  - b.example
block:
  - "=n12.bulk.example"
"""

FEED = """\
c.example
c.example
b.example
open.a.example
exact.example
www.c.example
d.example
n20.bulk.example
www.d.example
c.example
""" + "".join(f"www{i}.d.example\n" for i in range(1, 7))

HOSTS = """\
0.0.0.0 host.example
0.0.0.0 c.example
0.0.0.0 www.host.example
"""

SECOND = """\
id: second
action: nodata
lists:
  - file: ../lists/second.txt
"""


def setup(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    lists = tmp_path / "lists"
    policies.mkdir()
    lists.mkdir()
    bulk = "".join(f"  - n{i}.bulk.example\n" for i in range(BULK))
    (policies / "10-court.yaml").write_text(COURT_HEAD + bulk + COURT_TAIL)
    (policies / "20-isp.yaml").write_text(ISP)
    (policies / "30-same.yaml").write_text(SAME)
    (policies / "40-school.yaml").write_text(SCHOOL)
    (policies / "50-second.yaml").write_text(SECOND)
    (lists / "feed.txt").write_text(FEED)
    (lists / "hosts.txt").write_text(HOSTS)
    (lists / "second.txt").write_text("d.example\nwww.host.example\nsub.d.example\ne.example\n")
    settings = {
        "listen": ["127.0.0.1:5300"],
        "upstreams": ["127.0.0.1:5301"],
        "policies": ["policies/*.yaml"],
    }
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


EXPECTED = [
    "<dir>/policies/10-court.yaml:6:5: warning: =exact.example is already covered by"
    " exact.example at line 7 with the same action; remove one of them",
    "<dir>/policies/10-court.yaml:9:5: warning: x.y.below.example is already covered by"
    " *.below.example (line 8) with the same action; the entry changes nothing",
    "<dir>/policies/10-court.yaml:11:5: warning: nx.a.example is already covered by"
    " a.example (line 4) with the same action; the entry changes nothing",
    "<dir>/policies/10-court.yaml:2117:5: warning: the exemption nothing.example exempts"
    " nothing: no block entry or list name covers it",
    "<dir>/policies/20-isp.yaml:4:5: warning: conflict: a.example is nxdomain here but"
    " warning-page by policy 'court' (<dir>/policies/10-court.yaml:4); that policy is"
    " listed first in the configuration, so warning-page wins",
    "<dir>/policies/20-isp.yaml:6:5: warning: www.b.example is blocked (nxdomain) here"
    " but exempted at <dir>/policies/10-court.yaml:2118 (policy 'court'): the exemption"
    " wins, so this entry has no effect there (at the same name an exemption beats a"
    " block)",
    "<dir>/policies/20-isp.yaml:7:5: warning: conflict: n7.bulk.example is nxdomain here"
    " but warning-page by policy 'court' (<dir>/policies/10-court.yaml:22); that policy"
    " is listed first in the configuration, so warning-page wins",
    "<dir>/policies/20-isp.yaml:8:5: warning: conflict: *.exact.example is nxdomain here"
    " but warning-page by policy 'court' (<dir>/policies/10-court.yaml:7); that policy"
    " is listed first in the configuration, so warning-page wins for the names under it",
    "<dir>/policies/20-isp.yaml:9:5: warning: x.d.example is already covered by"
    " d.example (in a list of this policy) with the same action; the entry changes"
    " nothing",
    "<dir>/policies/20-isp.yaml:11:5: warning: list feed.txt: 2 names listed more than"
    " once in this policy's lists: c.example (lines 1, 2), c.example (lines 1, 2)",
    "<dir>/policies/20-isp.yaml:11:5: warning: list feed.txt: 1 name also an entry of"
    " this policy: exact.example (entry at line 8)",
    "<dir>/policies/20-isp.yaml:11:5: warning: list feed.txt: 2 names blocked by this"
    " list and exempted by an allow entry, which wins: b.example"
    " (<dir>/policies/40-school.yaml:5), open.a.example"
    " (<dir>/policies/10-court.yaml:2116)",
    "<dir>/policies/20-isp.yaml:11:5: warning: list feed.txt: 1 name also blocked by"
    " policy 'court' with action warning-page; policy 'court' is listed first in the"
    " configuration, so warning-page wins: n20.bulk.example"
    " (<dir>/policies/10-court.yaml:35)",
    "<dir>/policies/20-isp.yaml:11:5: warning: list feed.txt: 1 name also blocked by"
    " policy 'same' with action warning-page; policy 'isp' is listed first in the"
    " configuration, so nxdomain wins: c.example (<dir>/policies/30-same.yaml:7)",
    "<dir>/policies/20-isp.yaml:11:5: warning: list feed.txt: 8 names already covered by"
    " a broader name of this policy with the same action: www.c.example (line 6),"
    " www.d.example (line 9), www1.d.example (line 11), www2.d.example (line 12),"
    " www3.d.example (line 13), and 3 more",
    "<dir>/policies/20-isp.yaml:12:5: warning: list hosts.txt: 1 name listed more than"
    " once in this policy's lists: c.example (line 2)",
    "<dir>/policies/30-same.yaml:5:5: warning: conflict: www.ref.example is nxdomain"
    " here but warning-page by policy 'court' (<dir>/policies/10-court.yaml:10); that"
    " policy is listed first in the configuration, so warning-page wins",
    "<dir>/policies/30-same.yaml:8:5: warning: duplicate entry: n9.bulk.example is also"
    " warning-page by policy 'court' (<dir>/policies/10-court.yaml:24), which is listed"
    " first in the configuration and decides",
    "<dir>/policies/30-same.yaml:9:5: warning: duplicate entry: www.a.example is also"
    " warning-page by policy 'court' (<dir>/policies/10-court.yaml:5), which is listed"
    " first in the configuration and decides",
    "<dir>/policies/40-school.yaml:5:5: warning: b.example is exempted here and blocked"
    " (nxdomain) at <dir>/policies/20-isp.yaml:5 (policy 'isp'): the exemption wins, so"
    " it is not blocked (at the same name an exemption beats a block) (for the clients"
    " both apply to, while both policies are in force)",
    "<dir>/policies/40-school.yaml:7:5: warning: duplicate entry: =n12.bulk.example is"
    " also warning-page by policy 'court' (<dir>/policies/10-court.yaml:27), which is"
    " listed first in the configuration and decides for the name itself (for the clients"
    " both apply to, while both policies are in force)",
    "<dir>/policies/50-second.yaml:4:5: warning: list second.txt: 2 names also blocked"
    " by policy 'isp' with action nxdomain; policy 'isp' is listed first in the"
    " configuration, so nxdomain wins: d.example (a list), www.host.example (a list)",
    "ok: <dir>/sinkhole.yaml: 5 policies, 2131 names (list names: 3 exact, 17 subtree),"
    " 22 warnings",
]


def test_every_warning_word_for_word(tmp_path: Path) -> None:
    result = run_check(setup(tmp_path), NOW)
    lines = [line.replace(str(tmp_path), "<dir>") for line in render_text(result)]
    assert lines == EXPECTED


def test_json_lists_the_warnings_in_the_order_found(tmp_path: Path) -> None:
    result = run_check(setup(tmp_path), NOW)
    document = json.loads(json.dumps(result.as_dict()).replace(str(tmp_path), "<dir>"))
    found = [(w["file"].rsplit("/", 1)[1], w["line"], w["column"]) for w in document["warnings"]]
    assert found == EXPECTED_ORDER
    assert [(p["id"], p["entries"], p["list_names"]) for p in document["policies"]] == [
        ("court", BULK + 14, 0),
        ("isp", 6, 19),
        ("same", 6, 0),
        ("school", 2, 0),
        ("second", 0, 4),
    ]
    assert document["names"] == 2131
    assert document["list_names_by_match"] == {"exact": 3, "subtree": 17}


EXPECTED_ORDER: list[tuple[str, int, int]] = [
    ("20-isp.yaml", 4, 5),
    ("30-same.yaml", 9, 5),
    ("10-court.yaml", 6, 5),
    ("20-isp.yaml", 8, 5),
    ("30-same.yaml", 5, 5),
    ("20-isp.yaml", 7, 5),
    ("30-same.yaml", 8, 5),
    ("40-school.yaml", 7, 5),
    ("20-isp.yaml", 6, 5),
    ("40-school.yaml", 5, 5),
    ("10-court.yaml", 9, 5),
    ("10-court.yaml", 11, 5),
    ("10-court.yaml", 2117, 5),
    ("20-isp.yaml", 9, 5),
    ("20-isp.yaml", 11, 5),
    ("20-isp.yaml", 11, 5),
    ("20-isp.yaml", 11, 5),
    ("20-isp.yaml", 11, 5),
    ("20-isp.yaml", 11, 5),
    ("20-isp.yaml", 11, 5),
    ("20-isp.yaml", 12, 5),
    ("50-second.yaml", 4, 5),
]
