"""Go's JSON decoding matches field names case-insensitively: runc takes `"Process"` or
`resources.CPU` for `process` and `resources.cpu`. minirun takes them too, with a warning
naming the canonical spelling (issue 12), by renaming known fields of config.json before
it is validated. Maps with free keys (annotations, sysctl, unified...) are left alone.
"""

from __future__ import annotations

from minirun.log import log

# key -> schema of its value: a dict (an object), [schema] (a list of such), or None.
HOOK = {"path": None, "args": None, "env": None, "timeout": None}
IDMAP = [{"containerID": None, "hostID": None, "size": None}]
THROTTLE = [{"major": None, "minor": None, "rate": None}]
PROCESS = {
    "terminal": None, "consoleSize": {"height": None, "width": None},
    "user": {"uid": None, "gid": None, "umask": None, "additionalGids": None,
             "username": None},
    "args": None, "commandLine": None, "env": None, "cwd": None,
    "capabilities": {k: None for k in ("bounding", "effective", "inheritable", "permitted",
                                       "ambient")},
    "rlimits": [{"type": None, "soft": None, "hard": None}], "noNewPrivileges": None,
    "apparmorProfile": None, "oomScoreAdj": None, "selinuxLabel": None,
    "ioPriority": {"class": None, "priority": None},
}
RESOURCES = {
    "devices": [{"allow": None, "type": None, "major": None, "minor": None, "access": None}],
    "memory": {k: None for k in ("limit", "reservation", "swap", "kernel", "kernelTCP",
                                 "swappiness", "disableOOMKiller", "useHierarchy",
                                 "checkBeforeUpdate")},
    "cpu": {k: None for k in ("shares", "quota", "burst", "period", "realtimeRuntime",
                              "realtimePeriod", "cpus", "mems", "idle")},
    "pids": {"limit": None},
    "blockIO": {"weight": None, "leafWeight": None,
                "weightDevice": [{"major": None, "minor": None, "weight": None,
                                  "leafWeight": None}],
                "throttleReadBpsDevice": THROTTLE, "throttleWriteBpsDevice": THROTTLE,
                "throttleReadIOPSDevice": THROTTLE, "throttleWriteIOPSDevice": THROTTLE},
    "hugepageLimits": [{"pageSize": None, "limit": None}],
    "network": {"classID": None, "priorities": [{"name": None, "priority": None}]},
    "rdma": None, "unified": None,
}
CONFIG = {
    "ociVersion": None, "process": PROCESS, "root": {"path": None, "readonly": None},
    "hostname": None, "domainname": None,
    "mounts": [{"destination": None, "type": None, "source": None, "options": None,
                "uidMappings": IDMAP, "gidMappings": IDMAP}],
    "hooks": {k: [HOOK] for k in ("prestart", "createRuntime", "createContainer",
                                  "startContainer", "poststart", "poststop")},
    "annotations": None,
    "linux": {
        "namespaces": [{"type": None, "path": None}], "uidMappings": IDMAP,
        "gidMappings": IDMAP, "timeOffsets": None,
        "devices": [{k: None for k in ("type", "path", "major", "minor", "fileMode", "uid",
                                       "gid")}],
        "cgroupsPath": None, "resources": RESOURCES, "rootfsPropagation": None,
        "seccomp": {"defaultAction": None, "defaultErrnoRet": None, "architectures": None,
                    "flags": None, "listenerPath": None, "listenerMetadata": None,
                    "syscalls": [{"names": None, "action": None, "errnoRet": None,
                                  "args": [{"index": None, "value": None, "valueTwo": None,
                                            "op": None}]}]},
        "sysctl": None, "maskedPaths": None, "readonlyPaths": None, "mountLabel": None,
        "intelRdt": None, "personality": None,
    },
}


def canonical(doc: object, schema: object = CONFIG, where: str = "") -> None:
    """Rename, in place, fields spelt in another case to their canonical names."""
    if isinstance(schema, list) and isinstance(doc, list):
        for i, item in enumerate(doc):
            canonical(item, schema[0], f"{where}[{i}]")
        return
    if not isinstance(schema, dict) or not isinstance(doc, dict):
        return
    lower = {k.lower(): k for k in schema}
    for key in list(doc):
        name = key
        if key not in schema and isinstance(key, str) and key.lower() in lower:
            name = lower[key.lower()]
            if name in doc:
                continue  # the canonical one wins, as in Go (the exact match)
            doc[name] = doc.pop(key)
            log.warn(f"config.json: {where + '.' if where else ''}{key} taken as "
                     f"{where + '.' if where else ''}{name} (Go's JSON decoding ignores case, "
                     "as runc does: use the canonical spelling)")
        if name in schema:
            canonical(doc[name], schema[name], f"{where}.{name}" if where else name)
