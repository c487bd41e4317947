"""Interop tests: the resolver next to real DNS software from Debian (BIND, dnsdist)."""
