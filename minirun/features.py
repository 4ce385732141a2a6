"""`minirun features`: the OCI features document, computed from the code's own tables,
so it cannot drift from what minirun really supports."""

import json

from minirun import OCI_VERSION, __version__, hooks
from minirun.config import NAMESPACE_TYPES
from minirun.linux import mountopts, seccomp
from minirun.linux.capabilities import CAPABILITIES


def features() -> dict:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(hooks.KINDS),
        "mountOptions": mountopts.known_options(),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": list(CAPABILITIES),
            # v1: limits in v1 hierarchies on hybrid hosts and hosts with v1 only
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.minirun.version": __version__},
    }


def features_json() -> str:
    return json.dumps(features(), indent=4)
