"""minirun: a low-level OCI container runtime, runc-compatible, written to be read."""

__version__ = "0.1.0"
# The OCI runtime-spec version minirun implements (what `state` and `features` report).
OCI_VERSION = "1.0.2-dev"
