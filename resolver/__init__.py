"""sinkhole: a DNS sinkhole resolver."""

__version__ = "0.1.0"
