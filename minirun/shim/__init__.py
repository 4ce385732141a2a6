"""minirun as a native containerd shim (containerd-shim-minirun-v1): see main.py for the
process tree and the protocol, ttrpc.py for the wire, task.py for the Task service.
protobuf is imported only here (the runtime's own commands never load it)."""
