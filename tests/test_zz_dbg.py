import subprocess, os
from test_isolation import *
def test_dbg(sh, ctx, tmp_path, runtime):
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True, timeout=TIMEOUT)
    print("A", [l for l in open("/proc/self/mountinfo") if "netns" in l])
    def join(cfg):
        for n in cfg["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = str(nsfile)
    r = runtime("run", "--bundle", bundle_dir := ctx.tmp, "x") if False else None
    try:
        out = sh("readlink /proc/self/ns/net; ls /sys/class/net", join)
        print(out)
    finally:
        print("B", [l for l in open("/proc/self/mountinfo") if "netns" in l])
        subprocess.run(["umount", str(nsfile)])
