"""The composition root: the serving process, the supervisor of workers, the command line,
logs and metrics. It wires every other subpackage; nothing imports it.
"""
