#!/usr/bin/env python3
"""Regenerate the shim's protobuf modules (the *_pb2.py files next to this script).

    make shim-proto          (or: PYTHON_WITH_GRPC_TOOLS generate.py)

Sources: containerd 1.6's own .proto files as Debian ships them
(golang-github-containerd-containerd-dev, golang-github-containerd-cgroups-dev,
under /usr/share/gocode/src) and ttrpc.proto here. The gogoproto options (Go code
generation hints, no meaning on the wire) and containerd's fieldpath plugin options
are stripped; each file gets a flat name so that the generated modules import each
other as ``minirun.shim.proto.X_pb2``. Needs grpcio-tools (PyPI) for protoc.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOCODE = Path("/usr/share/gocode/src/github.com/containerd")
SOURCES = {  # flat name -> containerd's file
    "types_mount": GOCODE / "containerd/api/types/mount.proto",
    "types_task": GOCODE / "containerd/api/types/task/task.proto",
    "shim": GOCODE / "containerd/runtime/v2/task/shim.proto",
    "events_task": GOCODE / "containerd/api/events/task.proto",
    "events_ttrpc": GOCODE / "containerd/api/services/ttrpc/events/v1/events.proto",
    "cgroups_v1_metrics": GOCODE / "cgroups/stats/v1/metrics.proto",
    "cgroups_v2_metrics": GOCODE / "cgroups/v2/stats/metrics.proto",
    "runc_options": GOCODE / "containerd/runtime/v2/runc/options/oci.proto",
}
IMPORT = re.compile(r'^\s*import\s+(weak\s+)?"([^"]+)";\s*$', re.M)
FILE_OPTION = re.compile(r"^\s*option\s+\((gogoproto|containerd\.plugin)\.[^;]*;\s*$", re.M)
FIELD_OPTIONS = re.compile(r"\s*\[\s*\((gogoproto|containerd\.plugin)\.[^\]]*\]")


def flatten(text: str) -> str:
    by_path = {str(p.relative_to(GOCODE.parent.parent)): n for n, p in SOURCES.items()}

    def imp(m: re.Match) -> str:
        path = m.group(2)
        if path.startswith("gogoproto/") or path.endswith("plugin/fieldpath.proto"):
            return ""
        if path in by_path:
            return f'import "{by_path[path]}.proto";'
        return m.group(0)

    text = IMPORT.sub(imp, text)
    text = FILE_OPTION.sub("", text)
    return FIELD_OPTIONS.sub("", text)


def main() -> int:
    try:
        from grpc_tools import protoc  # noqa: F401
    except ImportError:
        print("generate.py: needs grpcio-tools (pip install grpcio-tools)", file=sys.stderr)
        return 1
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        names = []
        for name, src in SOURCES.items():
            (t / f"{name}.proto").write_text(flatten(src.read_text()))
            names.append(f"{name}.proto")
        (t / "ttrpc.proto").write_text((HERE / "ttrpc.proto").read_text())
        names.append("ttrpc.proto")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{t}", f"-I{include}",
                        f"--python_out={HERE}", *names], check=True)
    flat = "|".join(re.escape(n) for n in [*SOURCES, "ttrpc"])
    for py in HERE.glob("*_pb2.py"):
        text = re.sub(rf"^import ({flat})_pb2 as", r"from minirun.shim.proto import \1_pb2 as",
                      py.read_text(), flags=re.M)
        py.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
