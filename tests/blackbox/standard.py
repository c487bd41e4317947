"""The policies of the shared test server, and the names they decide."""

from __future__ import annotations

COURT = """\
id: court-order
title: Court-ordered block
authority: Test District Court
reference: Court order 42
action: warning-page
block:
  - blocked.example
  - name: ordered.example
    reference: Court order 43
allow:
  - open.blocked.example
"""

OPERATOR = """\
id: operator-list
ede: blocked
block:
  - operator-blocked.example
"""

FILTER = """\
id: family-filter
reference: Family filter list
ede: filtered
block:
  - filtered.example
"""

ACTIONS = """\
id: actions
authority: Test Regulator
reference: Actions order
block:
  - name: nxd.example
    action: nxdomain
  - name: empty.example
    action: nodata
  - name: refused.example
    action: refuse
  - name: dropped.example
    action: drop
"""

POLICIES = {
    "10-court.yaml": COURT,
    "20-operator.yaml": OPERATOR,
    "30-filter.yaml": FILTER,
    "40-actions.yaml": ACTIONS,
}

BLOCKED = "blocked.example"
EXEMPT = "open.blocked.example"
ORDERED = "ordered.example"
OPERATOR_BLOCKED = "operator-blocked.example"
FILTERED = "filtered.example"
NXDOMAIN_ACTION = "nxd.example"
NODATA_ACTION = "empty.example"
REFUSE_ACTION = "refused.example"
DROP_ACTION = "dropped.example"

# What the fake upstream answers for ordinary names.
UPSTREAM_IPV4 = "198.51.100.7"
UPSTREAM_IPV6 = "2001:db8::7"
UPSTREAM_TTL = 300
