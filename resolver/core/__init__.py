"""The serving core: the DNS wire format, the compiled policy, the answer cache and the
engine that decides every query, bytes in and bytes out.

Pure: it imports only the standard library (no sockets, event loop, clock or DNS library;
the time is passed in), so every part of it is tested with plain calls.
"""
