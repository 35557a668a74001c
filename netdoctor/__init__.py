"""netdoctor: what is wrong with this host's network, root cause first."""

__version__ = "0.1.0"
