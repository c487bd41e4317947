"""Policy sources: the configuration, YAML policy files, third-party lists, RPZ zone files,
and the build of a compiled snapshot from them (off the query path).

Imports: ``resolver.core`` only.
"""
