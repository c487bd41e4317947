"""Zone following: RPZ zones kept current from a primary by AXFR/IXFR, with NOTIFY, TSIG
and the saved copies.

Imports: ``resolver.core`` and ``resolver.sources``.
"""
