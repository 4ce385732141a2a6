"""The container's filesystem: mounts, /dev, pivot_root, masked and read-only paths.

Runs in the container's init, in its new mount namespace, before pivot_root. Every
destination is resolved *inside* the rootfs with openat2(RESOLVE_IN_ROOT): a symlink in
the image (`/proc -> /`) can never make a mount land on the host (CVE-2021-30465). The
resolved directory is then named to mount(2) as /proc/self/fd/N, so nothing can swap
the path between the check and the mount.
"""

import os
import stat
from _collections_abc import Callable  # collections.abc without collections (1.5 ms)

from minirun import syscalls as sc
from minirun.errors import ConfigError, MinirunError, SyscallError
from minirun.linux import mountopts
from minirun.steps import Tracer

O_PATH_DIR = os.O_PATH | os.O_CLOEXEC
IN_ROOT = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
MAX_SYMLINKS = 40

DEFAULT_DEVICES = (  # name, major, minor: the devices every container gets (runc's list)
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
    ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
)
# Flags that an unprivileged (user-namespace) remount must keep: the kernel locks them.
ST_TO_MS = ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID),
            (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC))


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_bind_sources_in(pid: int, cfg: dict, bundle: str) -> dict:
    """Runs in the runtime (host root): join the mount namespace of the set-up process,
    open every bind source there (O_PATH), come back. The reply carries the fds."""
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    indexes, fds = [], []
    try:
        sc.setns(target, sc.NS_FLAGS["mount"], f"/proc/{pid}/ns/mnt")
        try:
            for i, m in enumerate(cfg.get("mounts") or []):
                opts = m.get("options") or []
                if m.get("type") != "bind" and "bind" not in opts and "rbind" not in opts:
                    continue
                source = m.get("source") or ""
                if not source.startswith("/"):
                    source = os.path.join(bundle, source)
                try:
                    fds.append(os.open(source, os.O_PATH | os.O_CLOEXEC))
                    indexes.append(i)
                except OSError:
                    pass  # the init reports it, with the field, when it mounts
        finally:
            sc.setns(own, sc.NS_FLAGS["mount"], "/proc/self/ns/mnt")
            os.fchdir(cwd)
    finally:
        for fd in (own, cwd, target):
            os.close(fd)
    return {"indexes": indexes, "_fds": fds}


class Rootfs:
    """The rootfs of one container, addressed through an O_PATH fd on its directory."""

    def __init__(self, path: str, tracer: Tracer, in_userns: bool,
                 new_cgroupns: bool, cgroup_dir: str) -> None:
        self.path = path
        self.tracer = tracer
        self.in_userns = in_userns
        self.new_cgroupns = new_cgroupns
        self.cgroup_dir = cgroup_dir  # the container's cgroup in the host's hierarchy
        # v1 controller -> the container's directory (hybrid and v1-only hosts): then a
        # "cgroup" mount is runc's v1 layout (a tmpfs, one directory per hierarchy)
        self.cgroup_v1: dict[str, str] = {}
        self.cgroup_v2 = True  # the container has a cgroup2 directory (not v1 only)
        # sets the three above when first needed: the runtime makes the cgroup while
        # the set-up processes work (container.py)
        self.resolve_cgroup: Callable[[Rootfs], None] | None = None
        self.fd = -1
        self.deferred_ro: list[tuple[str, int]] = []  # (destination, flags) to make ro
        self.bind_fds: dict[int, int] = {}  # mounts[i] -> O_PATH fd on its source

    # ----------------------------------------------------------- safe path handling

    def open_in_root(self, dest: str, flags: int = O_PATH_DIR) -> int:
        return sc.openat2(self.fd, dest, flags, IN_ROOT)

    def make_path(self, dest: str, is_dir: bool, depth: int = 0) -> int:
        """Create `dest` inside the rootfs (like mkdir -p, or a file) and return an
        O_PATH fd on it. Symlinks on the way resolve inside the rootfs."""
        try:
            return self.open_in_root(dest)
        except SyscallError as e:
            if e.errno != 2 or depth > MAX_SYMLINKS:  # ENOENT: create what is missing
                raise
        parent, name = os.path.split(os.path.normpath("/" + dest))
        if not name:
            return self.open_in_root("/")
        pfd = self.make_path(parent, True, depth + 1)
        try:
            self._create_entry(pfd, name, is_dir, dest)
            return self.open_in_root(dest)
        except SyscallError as e:
            if e.errno != 2:
                raise
            # `name` is a dangling symlink: create its target, resolved in the root.
            target = os.readlink(name, dir_fd=pfd)
            base = parent if not target.startswith("/") else "/"
            return self.make_path(os.path.join(base, target), is_dir, depth + 1)
        finally:
            os.close(pfd)

    def _create_entry(self, pfd: int, name: str, is_dir: bool, dest: str) -> None:
        try:
            if is_dir:
                os.mkdir(name, 0o755, dir_fd=pfd)
            else:
                fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644, dir_fd=pfd)
                os.close(fd)
        except FileExistsError:
            pass
        except OSError as e:
            raise SyscallError("mkdir" if is_dir else "open(O_CREAT)", e.errno or 0,
                               dest) from None

    # ----------------------------------------------------------- the sequence

    def prepare(self, cfg: dict, bundle: str) -> None:
        linux = cfg.get("linux") or {}
        with self.tracer.step("propagation", "/ rslave"):
            # Nothing we mount may reach the host; pivot_root also refuses shared mounts.
            # linux.rootfsPropagation is applied to the new root after pivot_root.
            sc.mount(None, "/", None, sc.MS_SLAVE | sc.MS_REC)
        with self.tracer.step("bind-rootfs", self.path):
            sc.mount(self.path, self.path, None, sc.MS_BIND | sc.MS_REC)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        mounts = cfg.get("mounts") or []
        for i, m in enumerate(mounts):
            with self.tracer.step("mount", f"{m['destination']} (mounts[{i}])"):
                self.mount(m, bundle, f"mounts[{i}]", self.bind_fds.get(i))
        for fd in self.bind_fds.values():
            os.close(fd)
        self.bind_fds = {}
        # The spec's default devices, with or without a /dev mount (as runc): a container
        # never depends on nodes (or symlinks) the image put in its /dev.
        self.populate_dev(linux.get("devices") or [])
        self.mask_paths(linux.get("maskedPaths") or [])
        self.remount_read_only()

    def remount_read_only(self) -> None:
        """The `ro` of every mount, applied after all mounts and devices (runc's order):
        a mount under a read-only one (/dev/pts under a `ro` /dev) can still be made."""
        for dest, flags in self.deferred_ro:
            with self.tracer.step("remount-ro", dest), self._reopen(dest) as top:
                remount_bind(fdpath(top.fd), (flags & ~sc.MS_REMOUNT) | sc.MS_RDONLY, dest)
        self.deferred_ro.clear()

    def mount(self, m: dict, bundle: str, where: str, source_fd: int | None = None) -> None:
        opts = mountopts.parse(m.get("options") or [])
        kind = m.get("type") or ""
        source = m.get("source") or ""
        is_bind = kind == "bind" or bool(opts.flags & sc.MS_BIND)
        dest = m["destination"]
        if opts.flags & sc.MS_RDONLY and not opts.flags & sc.MS_REMOUNT:
            opts.flags &= ~sc.MS_RDONLY  # read-only once everything is mounted
            self.deferred_ro.append((dest, opts.flags))
        if is_bind:
            opts.flags |= sc.MS_BIND
            if not source.startswith("/"):
                source = os.path.join(bundle, source)
            if source_fd is not None:
                source = fdpath(source_fd)  # opened by the runtime, in our mount namespace
            try:
                is_dir = stat.S_ISDIR(os.stat(source).st_mode)
            except OSError as e:
                raise ConfigError(f"{where}.source",
                                  f"{source}: {os.strerror(e.errno or 0)}") from None
        else:
            is_dir = True
            if kind in ("proc", "sysfs"):
                self._check_ordinary_dir(dest, kind, where)
        under = self.make_path(dest, is_dir)
        try:
            if is_bind:
                self._bind(source, under, dest, opts)
            else:
                self._mount_fs(kind, source, under, dest, opts, where)
            if opts.propagation or opts.attr_set or opts.attr_clr:
                with self._reopen(dest) as top:
                    for prop in opts.propagation:
                        sc.mount(None, fdpath(top.fd), None, prop, shown=dest)
                    if opts.attr_set or opts.attr_clr:
                        sc.mount_setattr(top.fd, "", True, opts.attr_set, opts.attr_clr, dest)
        finally:
            os.close(under)

    def _check_ordinary_dir(self, dest: str, kind: str, where: str) -> None:
        """procfs and sysfs go on a real directory only, never through a symlink (runc
        1.1: CVE-2019-19921, CVE-2023-27561, CVE-2023-28642)."""
        parent, name = os.path.split(os.path.normpath("/" + dest))
        try:
            pfd = self.open_in_root(parent or "/")
        except SyscallError:
            return  # created below as directories
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False) if name else None
        except FileNotFoundError:
            st = None
        finally:
            os.close(pfd)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}.destination",
                              f'filesystem "{kind}" must be mounted on ordinary directory '
                              f"({dest} is a {'symlink' if stat.S_ISLNK(st.st_mode) else 'file'})")

    def _bind(self, source: str, under: int, dest: str, opts: mountopts.ParsedOptions) -> None:
        flags = opts.flags & (sc.MS_BIND | sc.MS_REC)
        sc.mount(source, fdpath(under), None, flags, shown=dest)
        rest = opts.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if rest:
            with self._reopen(dest) as top:
                remount_bind(fdpath(top.fd), rest, dest)

    def _mount_fs(self, kind: str, source: str, under: int, dest: str,
                  opts: mountopts.ParsedOptions, where: str) -> None:
        if not kind:
            raise ConfigError(f"{where}.type", "missing: say which filesystem to mount")
        data = ",".join(opts.data) or None
        fstype = "cgroup2" if kind == "cgroup" else kind
        target = fdpath(under)
        if fstype == "cgroup2" and self.resolve_cgroup is not None:
            self.resolve_cgroup(self)
            self.resolve_cgroup = None
        if kind == "cgroup" and self.cgroup_v1 and not self.in_userns:
            self._mount_cgroup_v1(under, dest, opts)
            return
        if fstype == "cgroup2" and not self.new_cgroupns:
            # As runc: without a cgroup namespace, show the container its own cgroup by
            # binding it from the host's cgroup2 mount (a fresh cgroup2 mount would show
            # the host's whole tree, and costs ~10 ms).
            sc.mount(self.cgroup_dir, target, None, sc.MS_BIND | sc.MS_REC, shown=dest)
            with self._reopen(dest) as top:
                remount_bind(fdpath(top.fd), opts.flags, dest)
            return
        try:
            sc.mount(source or kind, target, fstype, opts.flags, data, shown=dest)
        except SyscallError as e:
            if fstype == "sysfs" and e.errno == 1:
                # Not owning the network namespace (user ns joining the host's): as runc,
                # fall back to a read-only recursive bind of the host's /sys.
                sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC, shown=dest)
                with self._reopen(dest) as top:
                    remount_bind(fdpath(top.fd), opts.flags | sc.MS_RDONLY, dest)
            else:
                raise
        if "tmpcopyup" in opts.extensions:
            with self._reopen(dest) as top:
                _copy_tree(under, top.fd)

    def _mount_cgroup_v1(self, under: int, dest: str, opts: mountopts.ParsedOptions) -> None:
        """runc's v1 layout: a tmpfs, in it each v1 hierarchy the container joined bound
        from its directory there (named as on the host, "cpu,cpuacct", with a symlink per
        controller), and cgroup2 at unified on a hybrid host; read-only if asked."""
        sc.mount("tmpfs", fdpath(under), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                 "mode=755", shown=dest)
        # `ro` is applied once everything is mounted (remount_read_only): to the tmpfs,
        # and to each hierarchy bound in it
        ro_later = [(d, f) for d, f in self.deferred_ro if d == dest]
        with self._reopen(dest) as top:
            by_dir: dict[str, list[str]] = {}
            for ctrl, d in sorted(self.cgroup_v1.items()):
                by_dir.setdefault(d, []).append(ctrl)
            names = []
            for d, ctrls in by_dir.items():
                name = _hierarchy_name(d, ctrls)
                self._bind_cgroup_dir(top.fd, name, d, dest, opts.flags)
                names.append(name)
                for ctrl in ctrls if "," in name else []:
                    if ctrl != name:
                        os.symlink(name, ctrl, dir_fd=top.fd)
            if self.cgroup_v2:
                self._bind_cgroup_dir(top.fd, "unified", self.cgroup_dir, dest, opts.flags)
                names.append("unified")
        for _, flags in ro_later:
            self.deferred_ro += [(os.path.join(dest, n), flags) for n in names]

    @staticmethod
    def _bind_cgroup_dir(top: int, name: str, source: str, dest: str, flags: int) -> None:
        shown = os.path.join(dest, name)
        os.mkdir(name, 0o755, dir_fd=top)
        fd = os.open(name, O_PATH_DIR | os.O_NOFOLLOW, dir_fd=top)
        try:
            sc.mount(source, fdpath(fd), None, sc.MS_BIND | sc.MS_REC, shown=shown)
        finally:
            os.close(fd)
        fd = os.open(name, O_PATH_DIR | os.O_NOFOLLOW, dir_fd=top)
        try:
            remount_bind(fdpath(fd), flags | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, shown)
        finally:
            os.close(fd)

    def _reopen(self, dest: str) -> "_Fd":
        """An fd on what is mounted at `dest` now (the one taken before is underneath)."""
        return _Fd(self.open_in_root(dest))

    def mask_paths(self, paths: list[str]) -> None:
        """linux.maskedPaths, before pivot_root: a file is covered with the host's
        /dev/null, opened by minirun itself and checked to be that device (never a path
        the image controls: its /dev/null could be a symlink to a host file); a
        directory with an empty read-only tmpfs. Destinations resolve inside the root."""
        null = _host_null()
        try:
            for i, path in enumerate(paths):
                with self.tracer.step("mask", f"{path} (linux.maskedPaths[{i}])"):
                    try:
                        fd = self.open_in_root(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
                    except SyscallError as e:
                        if e.errno in (2, 20, 40):  # ENOENT, ENOTDIR, ELOOP: nothing to hide
                            continue
                        raise
                    try:
                        if stat.S_ISDIR(os.fstat(fd).st_mode):
                            sc.mount("tmpfs", fdpath(fd), "tmpfs", sc.MS_RDONLY, None, shown=path)
                        else:
                            sc.mount(fdpath(null), fdpath(fd), None, sc.MS_BIND, shown=path)
                    finally:
                        os.close(fd)
        finally:
            os.close(null)

    def make_cwd(self, cwd: str) -> None:
        """runc creates a missing process.cwd (as root, before the user switch)."""
        with self.tracer.step("mkdir-cwd", f"{cwd} (process.cwd)"):
            os.close(self.make_path(cwd, True))

    # ----------------------------------------------------------- /dev

    def populate_dev(self, devices: list[dict]) -> None:
        defaults = [{"path": f"/dev/{n}", "type": "c", "major": ma, "minor": mi,
                     "fileMode": 0o666, "uid": 0, "gid": 0} for n, ma, mi in DEFAULT_DEVICES]
        given = {os.path.normpath(d["path"]) for d in devices}
        self.create_devices([d for d in defaults if d["path"] not in given], "default devices")
        self.create_devices(devices, "linux.devices")
        with self.tracer.step("dev-links", "/dev"):
            dev = self.open_in_root("/dev", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                links = list(DEV_LINKS)
                if os.path.exists("/proc/kcore"):
                    links.append(("core", "/proc/kcore"))
                for name, target in links:
                    try:
                        os.symlink(target, name, dir_fd=dev)
                    except FileExistsError:
                        pass
                _ptmx_link(dev)
            finally:
                os.close(dev)

    def create_devices(self, devices: list[dict], where: str) -> None:
        for i, d in enumerate(devices):
            label = f"{where}[{i}]" if where == "linux.devices" else where
            with self.tracer.step("device", f"{d['path']} ({label})"):
                self._device(d)

    def _device(self, d: dict) -> None:
        path = os.path.normpath(d["path"])
        parent_fd = self.make_path(os.path.dirname(path), True)
        name = os.path.basename(path)
        mode = d.get("fileMode", 0o666) & 0o7777
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        try:
            if self._existing_device_matches(parent_fd, name, d, kinds[d["type"]]):
                return
            if self.in_userns:
                # mknod is not allowed in a user namespace: bind the host's node instead.
                self._bind_device(parent_fd, name, path)
            else:
                rdev = os.makedev(d.get("major", 0), d.get("minor", 0))
                os.mknod(name, kinds[d["type"]] | mode, rdev, dir_fd=parent_fd)
                _own_node(parent_fd, name, kinds[d["type"]], rdev, mode,
                          d.get("uid", 0), d.get("gid", 0))
        except OSError as e:
            raise SyscallError("mknod", e.errno or 0, path) from None
        finally:
            os.close(parent_fd)

    @staticmethod
    def _existing_device_matches(parent_fd: int, name: str, d: dict, kind: int) -> bool:
        """A node already there is kept if it is the device asked for; anything else
        at that path is an error (config-linux.md, devices)."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        same = stat.S_IFMT(st.st_mode) == kind and (
            d["type"] == "p" or st.st_rdev == os.makedev(d.get("major", 0), d.get("minor", 0)))
        if not same:
            raise MinirunError(f"{d['path']} already exists in the rootfs and is not the "
                               f"device asked for ({d['type']} {d.get('major')}:"
                               f"{d.get('minor')})")
        return True

    def _bind_device(self, parent_fd: int, name: str, path: str) -> None:
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=parent_fd)
        os.close(fd)
        with self._reopen(path) as node:
            sc.mount(path, fdpath(node.fd), None, sc.MS_BIND, shown=path)

    # ----------------------------------------------------------- entering the root

    def set_propagation(self, prop: str | None) -> None:
        """linux.rootfsPropagation on the container's root (after pivot_root): `shared`
        is a new peer group, `slave` keeps receiving the host's events."""
        if prop:
            with self.tracer.step("propagation", f"/ {prop} (linux.rootfsPropagation)"):
                sc.mount(None, "/", None, mountopts.PROPAGATION_OPTIONS[prop])

    def pivot(self, no_pivot: bool) -> None:
        if no_pivot:
            with self.tracer.step("hide-proc-sys", "procfs and sysfs outside the root"):
                _hide_outside_proc_sys(self.path)
            with self.tracer.step("move-root", self.path):
                os.chdir(self.path)
                sc.mount(self.path, "/", None, sc.MS_MOVE)
                os.chroot(".")
                os.chdir("/")
        else:
            with self.tracer.step("pivot_root", self.path):
                _pivot_root(self.path)
        os.close(self.fd)
        self.fd = -1


def _hide_outside_proc_sys(root: str) -> None:
    """--no-pivot keeps the old root under the new one: a procfs or sysfs left fully
    visible there would let a user namespace inside the container mount a new proc (the
    kernel allows it when one is fully visible). Detach each one outside the root, or
    cover it with an empty read-only tmpfs when it cannot go (as runc 1.1)."""
    targets = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point, fstype = left.split()[4], right.split()[0]
            point = point.replace("\\040", " ")
            inside = point == root or point.startswith(root.rstrip("/") + "/")
            if fstype in ("proc", "sysfs") and not inside:
                targets.append(point)
    for point in sorted(targets, key=len, reverse=True):
        try:
            sc.umount2(point, sc.MNT_DETACH)
        except SyscallError:
            try:
                sc.mount("tmpfs", point, "tmpfs", sc.MS_RDONLY, "size=0")
            except SyscallError:
                pass  # gone already (below another detached mount)


def _host_null() -> int:
    """An O_PATH fd on the host's /dev/null, checked to be the null device (1:3)."""
    fd = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise MinirunError("the host's /dev/null is not the null device: cannot mask paths")
    return fd


def _pivot_root(path: str) -> None:
    """pivot_root(".", ".") then detach the old root stacked under the new one (runc's
    way: no directory for the old root is left inside the container)."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        sc.pivot_root(".", ".")
        os.fchdir(old_root)
        # Keep the unmount below from propagating to the host's mounts.
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC, shown="old root")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def remount_bind(target: str, flags: int, shown: str) -> None:
    """Remount a bind mount with `flags`; keep the flags the kernel has locked."""
    base = sc.MS_BIND | sc.MS_REMOUNT
    try:
        sc.mount(None, target, None, base | flags, shown=shown)
    except SyscallError as e:
        if e.errno != 1:
            raise
        locked = 0
        st = os.statvfs(target)
        for st_flag, ms_flag in ST_TO_MS:
            if st.f_flag & st_flag:
                locked |= ms_flag
        sc.mount(None, target, None, base | flags | locked, shown=shown)


def _own_node(parent_fd: int, name: str, kind: int, rdev: int, mode: int, uid: int,
              gid: int) -> None:
    """chmod and chown the node mknodat just made, through an fd on that very inode (no
    path walk that a swapped-in symlink could redirect to a host file)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        if stat.S_IFMT(st.st_mode) != kind or (kind != stat.S_IFIFO and st.st_rdev != rdev):
            raise MinirunError(f"{name}: replaced while being created")
        # /proc/self/fd/N names the inode itself (a magic link, not a path to resolve).
        os.chmod(fdpath(fd), mode)
        os.chown(fdpath(fd), uid, gid)
    finally:
        os.close(fd)


def _ptmx_link(dev: int) -> None:
    try:
        os.unlink("ptmx", dir_fd=dev)
    except FileNotFoundError:
        pass
    os.symlink("pts/ptmx", "ptmx", dir_fd=dev)


def _copy_tree(src_fd: int, dst_fd: int) -> None:
    """tmpcopyup: copy what was under a tmpfs mount into it (before pivot_root, so the
    import still finds the Python library)."""
    import shutil

    src, dst = fdpath(src_fd), fdpath(dst_fd)
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isdir(s) and not os.path.islink(s):
            shutil.copytree(s, d, symlinks=True)
        else:
            shutil.copy2(s, d, follow_symlinks=False)


class _Fd:
    """An fd closed at the end of a `with` block."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> "_Fd":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


# ----------------------------------------------------------- after pivot_root

def readonly_paths(paths: list[str], tracer: Tracer) -> None:
    for i, path in enumerate(paths):
        with tracer.step("readonly", f"{path} (linux.readonlyPaths[{i}])"):
            if not os.path.exists(path):
                continue
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
            remount_bind(path, sc.MS_RDONLY | sc.MS_REC, path)


def readonly_root(tracer: Tracer) -> None:
    with tracer.step("readonly-root", "/ (root.readonly)"):
        remount_bind("/", sc.MS_RDONLY, "/")


def write_sysctls(sysctl: dict, tracer: Tracer) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        with tracer.step("sysctl", f"{key}={value} (linux.sysctl)"):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise MinirunError(f"linux.sysctl.{key}: no such sysctl ({path})") from None
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)


def _hierarchy_name(directory: str, controllers: list[str]) -> str:
    """A v1 hierarchy's name as the host mounts it ("cpu,cpuacct", "memory"), from the
    container's directory in it (/sys/fs/cgroup/cpu,cpuacct/... -> "cpu,cpuacct")."""
    parts = directory.split("/")
    for part in parts:
        names = part.split(",")
        if controllers[0] in names and all(n.isidentifier() for n in names):
            return part
    return ",".join(controllers)
