#!/usr/bin/env python3
"""Build a busybox OCI image locally, with no registry: an OCI image layout and
its oci-archive (the layout tarred), which ``ctr images import`` and
``podman load -i`` both accept.

Standard library only. The layer is one gzip'd tar holding Debian's
busybox-static at ``/bin/busybox``, a link per applet (``busybox --list-full``),
the usual empty directories and a minimal ``/etc/passwd`` and ``/etc/group``.
Every timestamp and owner is fixed, so the same busybox always gives the same
digests.

    from image import build_oci_archive
    build_oci_archive(Path("/tmp/x/busybox.tar"), "localhost/minirun-busybox:latest")

or as a command: ``python3 tests/engines/image.py OUT.tar [NAME]``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DEFAULT_NAME = "localhost/minirun-busybox:latest"
MTIME = 1_700_000_000  # fixed: reproducible digests
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

_DIRS = {  # path -> mode
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555, "root": 0o700,
    "tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777, "run": 0o755, "home": 0o755,
}
_FILES = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "busybox\n",
}


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def layer_tar(busybox: Path = BUSYBOX) -> bytes:
    """The uncompressed layer: busybox, its applet links, dirs, /etc files."""
    applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in sorted(_DIRS.items()):
            tar.addfile(_info(d, tarfile.DIRTYPE, mode))
        data = busybox.read_bytes()
        tar.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for a in sorted(set(applets)):
            a = a.lstrip("/")
            if a == "bin/busybox" or a.split("/")[0] not in ("bin", "sbin", "usr"):
                continue
            depth = a.count("/")
            tar.addfile(_info(a, tarfile.SYMTYPE, 0o777, link="../" * depth + "bin/busybox"))
        for f, text in sorted(_FILES.items()):
            raw = text.encode()
            tar.addfile(_info(f, tarfile.REGTYPE, 0o644, len(raw)), io.BytesIO(raw))
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def build_layout(name: str = DEFAULT_NAME, busybox: Path = BUSYBOX,
                 cmd: list[str] | None = None) -> dict[str, bytes]:
    """The OCI image layout as {relative path: content}; cmd is the image's Cmd."""
    raw = layer_tar(busybox)
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    blobs: dict[str, bytes] = {}
    layer = _blob(blobs, gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ENV, "Cmd": cmd or ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": "2023-11-14T22:13:20Z",
                     "created_by": "minirun tests/engines/image.py: busybox-static"}],
    }
    cfg = _blob(blobs, json.dumps(config, sort_keys=True).encode(),
                "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg,
        "layers": [layer],
    }
    man = _blob(blobs, json.dumps(manifest, sort_keys=True).encode(),
                "application/vnd.oci.image.manifest.v1+json")
    # containerd names the image from io.containerd.image.name, podman from
    # org.opencontainers.image.ref.name (a full reference is kept as it is).
    man["annotations"] = {"io.containerd.image.name": name,
                          "org.opencontainers.image.ref.name": name}
    man["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [man]}
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index, sort_keys=True).encode()}
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    return files


def build_oci_archive(out: Path, name: str = DEFAULT_NAME, busybox: Path = BUSYBOX,
                      cmd: list[str] | None = None) -> Path:
    """Write the layout as an oci-archive (a plain tar) at out; return out."""
    files = build_layout(name, busybox, cmd)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o755))
        for path, data in sorted(files.items()):
            tar.addfile(_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} OUT.tar [NAME]")
    print(build_oci_archive(Path(sys.argv[1]), *sys.argv[2:3]))
