"""worker-launcher: the privileged helper Apache Storm's supervisor uses to run workers."""

__version__ = "0.2.0"
