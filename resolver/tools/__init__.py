"""Operator tools: ``check``, ``explain``, ``diff``, ``verify``, ``export-rpz`` and the
control endpoint that shows what a running server has loaded.

Imports: ``resolver.core``, ``resolver.sources`` and ``resolver.zones``.
"""
