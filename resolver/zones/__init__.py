"""Zone following: RPZ zones kept current from a primary by AXFR/IXFR, with NOTIFY, TSIG
and the saved copies.

``follower`` (``Secondary``: timers, checks, reloads) runs ``fetch`` (one blocking check
against a primary) in threads; ``xfr`` reads transfers into ``records``, ``tsig`` checks
them, ``store`` keeps the saved copy, ``serial`` and ``timers`` are the RFC arithmetic;
``notify`` answers NOTIFY (``NotifyListener``); ``errors`` is the zones' part of the tree.

Imports: ``resolver.core`` and ``resolver.sources``.
"""
