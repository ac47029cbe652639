"""kext: a Kubernetes extension API server in Python."""

__version__ = "0.1.0"
