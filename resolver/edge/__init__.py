"""The network edge: client listeners (UDP, batched UDP, TCP) and the forwarder to upstream
resolvers. Transports only move bytes; every decision is the core engine's.

Imports: ``resolver.core`` only.
"""
