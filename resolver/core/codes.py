"""Mnemonics of DNS types and rcodes, as logs and tools print them (pure, no DNS library).

A type without a mnemonic here is written in the RFC 3597 form, ``TYPE65280``, and
read back in that form or as a bare number; an rcode without one as ``RCODE23``.
"""

from __future__ import annotations

# The types a resolver meets in queries (IANA's registry, obsolete types left out).
TYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    10: "NULL",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    24: "SIG",
    25: "KEY",
    28: "AAAA",
    29: "LOC",
    33: "SRV",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    38: "A6",
    39: "DNAME",
    41: "OPT",
    42: "APL",
    43: "DS",
    44: "SSHFP",
    45: "IPSECKEY",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    49: "DHCID",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    53: "SMIMEA",
    55: "HIP",
    59: "CDS",
    60: "CDNSKEY",
    61: "OPENPGPKEY",
    62: "CSYNC",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    108: "EUI48",
    109: "EUI64",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    253: "MAILB",
    254: "MAILA",
    255: "ANY",
    256: "URI",
    257: "CAA",
    32768: "TA",
    32769: "DLV",
}
TYPE_CODES: dict[str, int] = {name: code for code, name in TYPE_NAMES.items()}

RCODE_NAMES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    16: "BADVERS",
    23: "BADCOOKIE",
}


def type_name(rtype: int) -> str:
    """``A``, ``AAAA``, ...; ``TYPE65280`` for a type without a mnemonic here."""
    name = TYPE_NAMES.get(rtype)
    return name if name is not None else f"TYPE{rtype}"


def type_code(text: str) -> int:
    """A type by mnemonic (any case), in the ``TYPEnnn`` form or as a number; ValueError
    for anything else or a number outside 1..65535."""
    upper = text.strip().upper()
    if upper.isdigit() and upper.isascii():
        code = int(upper)
    elif upper.startswith("TYPE") and upper[4:].isdigit() and upper[4:].isascii():
        code = int(upper[4:])
    else:
        found = TYPE_CODES.get(upper)
        if found is None:
            raise ValueError(f"unknown query type {text!r}: write one such as AAAA, or TYPEnnn")
        return found
    if not 0 < code < 65536:
        raise ValueError(f"query type {text!r} out of range (1 to 65535)")
    return code


def rcode_name(rcode: int) -> str:
    """``NOERROR``, ``NXDOMAIN``, ...; ``RCODE23`` for an rcode without a mnemonic here."""
    name = RCODE_NAMES.get(rcode)
    return name if name is not None else f"RCODE{rcode}"
