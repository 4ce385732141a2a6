"""Bridge networking (minirun.network): requests, set-up, traffic, teardown, errors.

Safety: everything that makes a bridge, nftables rules or turns forwarding on runs in
a network namespace the test made (`ip netns add t-...`), deleted at the end, so all
of it dies with the namespace; traffic only goes to addresses inside namespaces the
tests made. The host namespace is never touched.

Until `create --network` and `delete` call the module themselves, tests/tools/netctl.py
drives it: under `nsenter --net=NS` it runs `minirun create`, `setup()`, `minirun start`
(and teardown, `delete --force`), the runtime and the set-up in the same namespace.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, TIMEOUT, TOOLS, CaseCtx, Runtime
from hypothesis import given, settings
from hypothesis import strategies as st

from minirun import network
from minirun.errors import MinirunError
from minirun.network import ipv4
from minirun.network.request import parse_publish

pytestmark = pytest.mark.minirun_only

PYTHON = str(REPO / ".venv" / "bin" / "python3")
NETCTL = str(TOOLS / "netctl.py")
BUSYBOX = "/bin/busybox"
CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]  # ping
ECHO_SERVER = ["nc", "-ll", "-p", "7", "-e", "/bin/cat"]  # TCP echo on port 7
# An outside network for the published-port and NAT tests (TEST-NET-1, RFC 5737).
OUTSIDE_HOST, OUTSIDE_CLIENT = "192.0.2.1", "192.0.2.2"


def with_net_raw(cfg: dict) -> None:
    for s in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        cfg["process"]["capabilities"][s] = list(CAPS)


# --------------------------------------------------------------------------
# Namespaces and the containers in them
# --------------------------------------------------------------------------


class NetNS:
    """A network namespace made by the test (`ip netns add`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        self.procs: list[subprocess.Popen] = []

    def run(self, *argv: str, input: str | None = None, check: bool = True,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        p = subprocess.run(["nsenter", f"--net={self.path}", "--", *argv], input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"in {self.name}: {argv} -> {p.returncode}\n{p.stderr}")
        return p

    def spawn(self, *argv: str) -> subprocess.Popen:
        """A background process in the namespace (killed by pid at cleanup)."""
        p = subprocess.Popen(["nsenter", f"--net={self.path}", "--", *argv],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def links(self) -> set[str]:
        out = self.run("ip", "-o", "link", "show").stdout
        return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}

    def ruleset(self) -> str:
        return self.run("nft", "list", "ruleset").stdout

    def delete(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()  # our own child, by pid
            p.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=True)


class Lab:
    """The namespace minirun runs in (bridge, NAT, forwarding) and its containers."""

    def __init__(self, ns: NetNS, runtime: Runtime, ctx: CaseCtx,
                 bundle: Callable[..., Path]) -> None:
        self.ns = ns
        self.rt = runtime
        self.root = runtime.root
        self.ctx = ctx
        self.bundle = bundle

    def netctl(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return self.ns.run(PYTHON, NETCTL, *args, "--root", str(self.root), check=False,
                           timeout=timeout)

    def up(self, args: list[str], *, cid: str | None = None, expect_ok: bool = True,
           config_edits=with_net_raw, **flags) -> dict | str:
        """A started container with networking; its record, or the error if the
        set-up failed (then the container is already deleted)."""
        cid = cid or self.ctx.new_id()
        b = self.bundle(args, config_edits)
        self.ctx.cleanups.append(lambda: self.down(cid))
        p = self.netctl("up", "--minirun", self.rt.binary, "--bundle", str(b), "--cid", cid,
                        "--flags", json.dumps(flags), "--out", str(self.out(cid)))
        if expect_ok:
            assert p.returncode == 0, f"netctl up {cid} failed:\n{p.stderr}"
            record = json.loads(p.stdout)
            record["cid"] = cid
            return record
        assert p.returncode != 0, f"netctl up {cid} should have failed:\n{p.stdout}"
        return p.stderr

    def down(self, cid: str) -> None:
        p = self.netctl("down", "--minirun", self.rt.binary, "--cid", cid)
        assert p.returncode == 0, f"netctl down {cid} failed:\n{p.stderr}"
        self.settled()

    def settled(self) -> None:
        """Wait for teardowns still at work in the background: they hold the lease
        lock (flock of the root) until done, as a set-up would wait for them."""
        if not self.root.is_dir():
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)

    def out(self, cid: str) -> Path:
        return self.ctx.tmp / f"{cid}.out"

    def pid(self, cid: str) -> int:
        return self.rt.state(cid)["pid"]

    def in_container(self, cid: str, *argv: str, check: bool = True,
                     input: str | None = None) -> subprocess.CompletedProcess:
        """Run a host busybox applet in the container's network namespace."""
        p = subprocess.run(["nsenter", "-t", str(self.pid(cid)), "-n", "--", BUSYBOX, *argv],
                           input=input, capture_output=True, text=True, timeout=TIMEOUT)
        if check and p.returncode != 0:
            raise AssertionError(f"in container {cid}: {argv} -> {p.returncode}\n{p.stderr}")
        return p

    def wait_output(self, cid: str) -> str:
        self.rt.wait_status(cid, "stopped")
        return self.out(cid).read_text(errors="replace")

    def leases(self) -> list[str]:
        d = self.root / ".network"
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) \
            if d.exists() else []

    def assert_clean(self, keep: set[str] = frozenset({"lo"})) -> None:
        """Nothing of minirun's left in the namespace or the root."""
        self.settled()
        assert self.ns.links() == set(keep)
        assert "minirun" not in self.ns.ruleset()
        assert not (self.root / ".network").exists(), self.leases()


BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def set_bridge_nf(ns: NetNS, on: int) -> None:
    """Whether bridged IPv4 goes through netfilter (br_netfilter; docker loads it),
    in this namespace only: the traffic tests run both ways when the host can."""
    if not os.path.exists(BRIDGE_NF):
        if on:
            pytest.skip("br_netfilter is not loaded on this host")
        return
    host = Path(BRIDGE_NF).read_text()
    ns.run("sh", "-c", f"echo {on} > {BRIDGE_NF}")
    if Path(BRIDGE_NF).read_text() != host:  # a kernel where it is not per namespace
        Path(BRIDGE_NF).write_text(host)
        pytest.fail("bridge-nf-call-iptables is not per network namespace here")


@pytest.fixture
def netns(ctx: CaseCtx) -> Callable[[str], NetNS]:
    def make(tag: str) -> NetNS:
        ns = NetNS(f"t-{tag}-{secrets.token_hex(3)}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True)
        ctx.cleanups.append(ns.delete)  # registered first: runs after the containers go
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    return make


@pytest.fixture
def lab(netns, runtime: Runtime, ctx: CaseCtx, bundle) -> Lab:
    return Lab(netns("lab"), runtime, ctx, bundle)


def link_namespaces(a: NetNS, a_addr: str, b: NetNS, b_addr: str) -> str:
    """A veth pair between two test namespaces, a /24 on it; returns a's end."""
    tag = secrets.token_hex(3)
    a.run("ip", "link", "add", f"vo{tag}", "type", "veth", "peer", "name", f"vi{tag}")
    a.run("ip", "link", "set", f"vi{tag}", "netns", b.path)
    for ns, dev, addr in ((a, f"vo{tag}", a_addr), (b, f"vi{tag}", b_addr)):
        ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
        ns.run("ip", "link", "set", dev, "up")
    return f"vo{tag}"


# --------------------------------------------------------------------------
# Requests: flags and annotations (no root needed)
# --------------------------------------------------------------------------

NO_FLAGS = {"network": None, "publish": [], "subnet": None, "bridge": None, "ip": None}


def req(annotations: dict | None = None, **flags) -> network.NetworkRequest | None:
    return network.request_from({**NO_FLAGS, **flags}, annotations or {})


def test_request_none_by_default() -> None:
    assert req() is None
    assert req(network="none") is None
    assert req({"org.minirun.network": "none"}) is None
    assert network.request_from({}, {"other": "x"}) is None


def test_request_bridge_defaults() -> None:
    r = req(network="bridge")
    assert (r.mode, r.bridge, r.subnet, r.address, r.publish) == \
        ("bridge", "minirun0", None, None, [])
    assert network.DEFAULT_SUBNET == "10.213.0.0/24"


def test_request_from_flags() -> None:
    r = req(network="bridge", publish=["8080:80", "53:53/udp,9000:9000/tcp"],
            subnet="10.77.0.0/16", bridge="lab-br.0", ip="10.77.3.4")
    assert r.publish == [(8080, 80, "tcp"), (53, 53, "udp"), (9000, 9000, "tcp")]
    assert (r.bridge, r.subnet, r.address, r.gateway) == \
        ("lab-br.0", "10.77.0.0/16", "10.77.3.4", "10.77.0.1")
    json.dumps(r.to_dict())


def test_request_from_annotations_and_flag_wins() -> None:
    ann = {"org.minirun.network": "bridge", "org.minirun.network.publish": "80:8080, 443:8443",
           "org.minirun.network.subnet": "10.50.0.0/24", "org.minirun.network.bridge": "br9",
           "org.minirun.network.ip": "10.50.0.9"}
    r = req(ann)
    assert (r.bridge, r.subnet, r.address) == ("br9", "10.50.0.0/24", "10.50.0.9")
    assert r.publish == [(80, 8080, "tcp"), (443, 8443, "tcp")]
    r = req(ann, bridge="br1", publish=["1:2"], subnet="10.60.0.0/24", ip="10.60.0.5")
    assert (r.bridge, r.subnet, r.address, r.publish) == \
        ("br1", "10.60.0.0/24", "10.60.0.5", [(1, 2, "tcp")])
    # --network none wins over the annotations, theirs options included
    assert req(ann, network="none") is None


@pytest.mark.parametrize("flags, annotations, message", [
    ({"network": "host"}, {}, "--network: unknown network mode 'host'"),
    ({}, {"org.minirun.network": "macvlan"}, "annotation org.minirun.network: unknown"),
    ({"network": "bridge", "subnet": "10.0.0.1/24"}, {},
     "--subnet: invalid subnet '10.0.0.1/24': host bits are set (did you mean 10.0.0.0/24?)"),
    ({"network": "bridge", "subnet": "10.0.0.0/33"}, {}, "--subnet: invalid subnet"),
    ({"network": "bridge", "subnet": "banana"}, {}, "--subnet: invalid subnet 'banana'"),
    ({"network": "bridge", "subnet": "10.0.0.0/31"}, {}, "--subnet: subnet 10.0.0.0/31 is too"),
    ({"network": "bridge", "subnet": "fd00::/64"}, {}, "only IPv4"),
    ({"network": "bridge", "subnet": "127.0.0.0/8"}, {}, "not usable"),
    ({"network": "bridge"}, {"org.minirun.network.subnet": "10.1.2.3/8"},
     "annotation org.minirun.network.subnet: invalid subnet"),
    ({"network": "bridge", "subnet": "10.9.0.0/24", "ip": "10.8.0.2"}, {},
     "--ip: address 10.8.0.2 is outside the subnet 10.9.0.0/24"),
    ({"network": "bridge", "subnet": "10.9.0.0/24", "ip": "10.9.0.1"}, {}, "is the gateway"),
    ({"network": "bridge", "subnet": "10.9.0.0/24", "ip": "10.9.0.255"}, {}, "broadcast"),
    ({"network": "bridge", "ip": "10.9.0.300"}, {}, "--ip: invalid IPv4 address '10.9.0.300'"),
    ({"network": "bridge", "publish": ["8080"]}, {},
     "--publish: invalid port mapping '8080': expected HOSTPORT:CONTAINERPORT"),
    ({"network": "bridge", "publish": ["8080:80/sctp"]}, {}, "unknown protocol 'sctp'"),
    ({"network": "bridge", "publish": ["0:80"]}, {}, "port 0 is out of range"),
    ({"network": "bridge", "publish": ["70000:80"]}, {}, "port 70000 is out of range"),
    ({"network": "bridge", "publish": ["80:80", "80:81"]}, {}, "host port 80/tcp is published"),
    ({"network": "bridge"}, {"org.minirun.network.publish": "80:80,x"},
     "annotation org.minirun.network.publish: invalid port mapping 'x'"),
    ({"network": "bridge", "bridge": "a/b"}, {}, "--bridge: invalid bridge name 'a/b'"),
    ({"network": "bridge", "bridge": "much-too-long-name0"}, {}, "invalid bridge name"),
    ({"network": "bridge"}, {"org.minirun.network.bridge": "-x"},
     "annotation org.minirun.network.bridge: invalid bridge name"),
    ({"publish": ["80:80"]}, {}, "--publish: needs --network bridge"),
    ({"network": "none", "subnet": "10.0.0.0/24"}, {}, "--subnet: needs --network bridge"),
    ({}, {"org.minirun.network.publish": "80:80"},
     "annotation org.minirun.network.publish: needs --network bridge"),
])
def test_request_errors(flags: dict, annotations: dict, message: str) -> None:
    with pytest.raises(MinirunError) as e:
        req(annotations, **flags)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_importing_the_module_is_cheap() -> None:
    """The default path (no network) must not import pyroute2 (~80 ms) or parse
    anything; asking for a bridge with ports and a bridge name still imports nothing
    heavy until setup: not even re or ipaddress (~6 ms on create's path, issue 11),
    which only an explicit --subnet or --ip needs."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import minirun.network as n; "
        "assert n.request_from({'network': None, 'publish': []}, {'a': 'b'}) is None; "
        "heavy = ('ipaddress', 're'); print(sorted(m for m in sys.modules if m in heavy)); "
        "n.request_from({'network': 'bridge', 'publish': ['1:2', '3:4/udp'], "
        "'bridge': 'br-x.1'}, {}); "
        "print(sorted(m for m in sys.modules if m in heavy or "
        "m.startswith(('pyroute2', 'asyncio'))))"
    )
    out = subprocess.run([PYTHON, "-I", "-S", "-c", code, str(REPO)], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", out
    assert out[1] == "[]", out


@pytest.mark.parametrize("spec", ["80:80/", "80:80/TCP", ":80", "80:", "123456:1", "a:b",
                                  "80:80/tcp/x", "80:80:90", "\uff11:2", " 80:80x"])
def test_publish_malformed(spec: str) -> None:
    with pytest.raises(MinirunError, match="invalid port mapping"):
        parse_publish(spec)


def test_publish_forms() -> None:
    assert parse_publish("8080:80") == (8080, 80, "tcp")
    assert parse_publish("53:5353/udp") == (53, 5353, "udp")
    assert parse_publish("65535:1/tcp") == (65535, 1, "tcp")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1),
       st.integers(0, 32))
def test_ipv4_arithmetic_agrees_with_ipaddress(a: int, pa: int, b: int, pb: int) -> None:
    """network/ipv4.py stands in for ipaddress in the helper (issue 11)."""
    import ipaddress

    net_a = ipaddress.IPv4Interface((a, pa)).network
    net_b = ipaddress.IPv4Interface((b, pb)).network
    assert ipv4.to_int(ipv4.to_str(a)) == a
    assert ipv4.network(ipv4.to_str(a), pa) == str(net_a)
    assert ipv4.overlaps(str(net_a), str(net_b)) == net_a.overlaps(net_b)
    if pa <= 30:  # the subnets request.py lets through
        assert ipv4.first_host(str(net_a)) == str(net_a.network_address + 1)
    small = ipaddress.IPv4Network((a & ~0xFF, max(pa, 24)), strict=False)
    assert list(ipv4.hosts(str(small))) == [str(h) for h in small.hosts()]


def test_ipv4_takes_only_dotted_quads() -> None:
    for loose in ("10.1", "10", "010.0.0.1x", "1.2.3.4.5", "::1"):
        with pytest.raises(OSError):
            ipv4.to_int(loose)


def test_setup_imports_only_pyroute2s_rtnl_messages() -> None:
    """What setup and teardown import (links.py) leaves out pyroute2's package
    `__init__` (ndb, ipdb, conntrack, asyncio: ~110 ms) and its asyncio-based IPRoute
    (~85 ms): only the rtnl message classes; the real package still imports after."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import minirun.network.links; "
        "print(sorted(m for m in sys.modules if m.startswith(('asyncio', 'pyroute2.ndb', "
        "'pyroute2.ipdb', 'pyroute2.iproute', 'pyroute2.conntrack')) or m == 'pyroute2')); "
        "assert 'pyroute2.netlink.rtnl.ifinfmsg' in sys.modules; "
        "from pyroute2 import IPRoute; print(IPRoute.__name__)"
    )
    out = subprocess.run([PYTHON, "-I", "-c", code, str(REPO)], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "IPRoute"], out


# --------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bridge_nf", [0, 1])
def test_two_containers_reach_each_other_and_the_gateway(lab: Lab, bridge_nf: int) -> None:
    set_bridge_nf(lab.ns, bridge_nf)
    server = lab.up(ECHO_SERVER)
    assert server["address"] == "10.213.0.2" and server["gateway"] == "10.213.0.1"
    assert server["created_bridge"] is True and server["bridge"] == "minirun0"
    script = (f"ping -c 1 -W 3 {server['gateway']} >/dev/null && echo gateway-ok; "
              f"ping -c 1 -W 3 {server['address']} >/dev/null && echo ping-ok; "
              f"echo tcp-hello | nc -w 3 {server['address']} 7")
    client = lab.up(["sh", "-c", script])
    assert client["address"] == "10.213.0.3"
    assert client["created_bridge"] is False
    assert lab.wait_output(client["cid"]).split() == ["gateway-ok", "ping-ok", "tcp-hello"]


def test_container_interface_address_route_and_mtu(lab: Lab) -> None:
    lab.ns.run("ip", "link", "add", "minirun0", "mtu", "1400", "type", "bridge")
    lab.ns.run("ip", "addr", "add", "10.213.0.1/24", "dev", "minirun0")
    lab.ns.run("ip", "link", "set", "minirun0", "up")
    c = lab.up(ECHO_SERVER)
    assert (c["mtu"], c["created_bridge"]) == (1400, False)
    links = lab.in_container(c["cid"], "ip", "-o", "link", "show").stdout
    assert sorted(line.split(": ")[1].split("@")[0] for line in links.splitlines()) == \
        ["eth0", "lo"]
    assert "mtu 1400" in lab.in_container(c["cid"], "ip", "link", "show", "eth0").stdout
    assert "inet 10.213.0.2/24" in lab.in_container(c["cid"], "ip", "addr", "show",
                                                     "eth0").stdout
    routes = lab.in_container(c["cid"], "ip", "route").stdout
    assert "default via 10.213.0.1 dev eth0" in routes
    host = lab.ns.run("ip", "-d", "link", "show", c["host_veth"]).stdout
    assert "master minirun0" in host and "state UP" in host and "mtu 1400" in host
    assert lab.ns.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    lab.down(c["cid"])
    # a bridge the user made stays, with its address; nothing of minirun's remains
    lab.assert_clean(keep={"lo", "minirun0"})
    assert "10.213.0.1/24" in lab.ns.run("ip", "addr", "show", "minirun0").stdout


def test_the_bridge_keeps_its_mac_as_containers_come_and_go(lab: Lab) -> None:
    """A bridge takes its ports' lowest MAC unless given one: the containers' ARP
    entries for the gateway would go stale each time a container comes or goes."""
    def mac(dev: str) -> str:
        return lab.ns.run("ip", "-o", "link", "show", dev).stdout.split("link/ether ")[1][:17]

    first = lab.up(ECHO_SERVER)
    before = mac("minirun0")
    others = [lab.up(ECHO_SERVER) for _ in range(4)]
    for c in others[:2]:
        lab.down(c["cid"])
    assert mac("minirun0") == before
    assert before not in {mac(c["host_veth"]) for c in [first, *others[2:]]}


def test_the_namespace_reaches_the_container(lab: Lab) -> None:
    c = lab.up(ECHO_SERVER)
    lab.ns.run(BUSYBOX, "ping", "-c", "1", "-W", "3", c["address"])
    got = lab.ns.run(BUSYBOX, "nc", "-w", "3", c["address"], "7", input="from-host\n")
    assert got.stdout == "from-host\n"


@pytest.mark.parametrize("bridge_nf", [0, 1])
def test_published_port_from_another_namespace(lab: Lab, netns, bridge_nf: int) -> None:
    set_bridge_nf(lab.ns, bridge_nf)
    outside = netns("out")
    uplink = link_namespaces(lab.ns, OUTSIDE_HOST, outside, OUTSIDE_CLIENT)
    c = lab.up(ECHO_SERVER, publish=["8080:7"])
    assert c["publish"] == [{"host_port": 8080, "container_port": 7, "proto": "tcp"}]
    got = outside.run(BUSYBOX, "nc", "-w", "3", OUTSIDE_HOST, "8080", input="published\n")
    assert got.stdout == "published\n"
    # only the published port is forwarded: 7 on the host address is not the container
    got = outside.run(BUSYBOX, "nc", "-w", "3", OUTSIDE_HOST, "7", input="x\n", check=False)
    assert got.stdout == ""
    lab.down(c["cid"])
    got = outside.run(BUSYBOX, "nc", "-w", "3", OUTSIDE_HOST, "8080", input="gone\n",
                      check=False)
    assert got.stdout == ""
    lab.assert_clean(keep={"lo", uplink})


@pytest.mark.parametrize("bridge_nf", [0, 1])
def test_containers_reach_published_ports_through_the_host(lab: Lab, netns, bridge_nf: int) -> None:
    """Another container, and the publishing container itself, through the host's
    addresses (the gateway, and an outside one): DNAT there and back."""
    set_bridge_nf(lab.ns, bridge_nf)
    outside = netns("out")
    link_namespaces(lab.ns, OUTSIDE_HOST, outside, OUTSIDE_CLIENT)
    server = lab.up(ECHO_SERVER, publish=["8080:7"])
    script = "; ".join(f"echo via-{a} | nc -w 3 {a} 8080"
                       for a in (server["gateway"], OUTSIDE_HOST))
    client = lab.up(["sh", "-c", script])
    assert lab.wait_output(client["cid"]).split() == [
        f"via-{server['gateway']}", f"via-{OUTSIDE_HOST}"]
    for a in (server["gateway"], OUTSIDE_HOST):
        got = lab.in_container(server["cid"], "nc", "-w", "3", a, "8080", input="self\n")
        assert got.stdout == "self\n"


@pytest.mark.parametrize("bridge_nf", [0, 1])
def test_outbound_traffic_is_masqueraded(lab: Lab, netns, bridge_nf: int) -> None:
    """The outside namespace has no route back to the containers' subnet: the echo
    comes back only if the container's connection leaves with the host's address."""
    set_bridge_nf(lab.ns, bridge_nf)
    outside = netns("out")
    link_namespaces(lab.ns, OUTSIDE_HOST, outside, OUTSIDE_CLIENT)
    outside.spawn(BUSYBOX, "nc", "-ll", "-p", "9", "-e", "/bin/cat")
    script = f"sleep 0.2; echo masqueraded | nc -w 3 {OUTSIDE_CLIENT} 9"
    c = lab.up(["sh", "-c", script])
    assert lab.wait_output(c["cid"]) == "masqueraded\n"
    assert "10.213.0.0/24" not in outside.run("ip", "route").stdout


# --------------------------------------------------------------------------
# Many at once, and teardown
# --------------------------------------------------------------------------


def test_twenty_concurrent_setups_get_distinct_addresses(lab: Lab, bundle) -> None:
    b = bundle(["sleep", "600"])
    cids = [lab.ctx.new_id(f"c{i}") for i in range(20)]
    for c in cids:
        lab.rt.ok("create", "--bundle", b, c)
        lab.ctx.cleanups.append(lambda c=c: lab.down(c))
    pids = {c: lab.pid(c) for c in cids}

    def setup(c: str) -> subprocess.CompletedProcess:
        return lab.netctl("setup", "--cid", c, "--pid", str(pids[c]), "--flags",
                          json.dumps({"publish": [f"{9000 + cids.index(c)}:80"]}))

    with ThreadPoolExecutor(len(cids)) as pool:
        done = list(pool.map(setup, cids))
    assert all(p.returncode == 0 for p in done), [p.stderr for p in done if p.returncode]
    records = {c: json.loads(p.stdout) for c, p in zip(cids, done, strict=True)}
    addresses = [r["address"] for r in records.values()]
    assert len(set(addresses)) == 20, addresses
    assert sorted(addresses) == sorted(f"10.213.0.{i}" for i in range(2, 22))
    assert len(lab.leases()) == 20
    for c in cids[:3]:  # each container really has its own address
        assert f"inet {records[c]['address']}/24" in lab.in_container(c, "ip", "addr").stdout
    assert lab.ns.ruleset().count("dnat to 10.213.0.") == 20

    with ThreadPoolExecutor(len(cids)) as pool:
        done = list(pool.map(lambda c: lab.netctl("teardown", "--cid", c), cids))
    assert all(p.returncode == 0 for p in done), [p.stderr for p in done if p.returncode]
    lab.assert_clean()


def test_teardown_after_sigkill_of_the_init(lab: Lab) -> None:
    c = lab.up(ECHO_SERVER, publish=["8080:7/tcp", "5353:53/udp"])
    pid = lab.pid(c["cid"])
    os.kill(pid, signal.SIGKILL)  # the container's init, started by this test
    os.waitpid(pid, 0)  # pytest is a subreaper: the init is its child now
    deadline = time.monotonic() + 10  # the kernel removes the pair with the namespace
    while c["host_veth"] in lab.ns.links() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(2):  # idempotent
        p = lab.netctl("teardown", "--cid", c["cid"], "--record", json.dumps(c))
        assert p.returncode == 0, p.stderr
    lab.assert_clean()


def test_teardown_while_the_container_runs_removes_the_pair(lab: Lab) -> None:
    c = lab.up(ECHO_SERVER)
    p = lab.netctl("teardown", "--cid", c["cid"], "--record", json.dumps(c))
    assert p.returncode == 0, p.stderr
    lab.assert_clean()
    links = lab.in_container(c["cid"], "ip", "-o", "link", "show").stdout
    assert "eth0" not in links


def test_stale_lease_is_reclaimed(lab: Lab) -> None:
    """A container that went without teardown (its state directory removed by hand):
    the next set-up removes its lease and rules, and its address is free again."""
    old = lab.up(ECHO_SERVER, publish=["8080:7"])
    pid = lab.pid(old["cid"])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    # Parked, not deleted: afterwards `delete` removes what else the runtime made.
    parked = lab.ctx.tmp / "parked"
    (lab.root / old["cid"]).rename(parked)
    assert lab.leases() == ["minirun0/10.213.0.2"]
    new = lab.up(ECHO_SERVER, publish=["8080:7"])
    assert new["address"] == "10.213.0.2"
    rules = lab.ns.ruleset()
    assert old["nft_chain"] not in rules and new["nft_chain"] in rules
    assert lab.leases() == ["minirun0/10.213.0.2"]
    parked.rename(lab.root / old["cid"])
    lab.down(old["cid"])
    lab.down(new["cid"])
    lab.assert_clean()


def test_stale_lease_on_another_bridge_takes_that_bridge_along(lab: Lab) -> None:
    old = lab.up(ECHO_SERVER, bridge="old0", subnet="10.213.9.0/24")
    pid = lab.pid(old["cid"])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    parked = lab.ctx.tmp / "parked"
    (lab.root / old["cid"]).rename(parked)
    new = lab.up(ECHO_SERVER)
    assert "old0" not in lab.ns.links()
    assert "b-old0" not in lab.ns.ruleset()
    assert lab.leases() == [f"minirun0/{new['address']}"]
    parked.rename(lab.root / old["cid"])
    lab.down(old["cid"])
    lab.down(new["cid"])
    lab.assert_clean()


# --------------------------------------------------------------------------
# Errors leave nothing behind
# --------------------------------------------------------------------------


def test_exhausted_pool(lab: Lab) -> None:
    first = lab.up(ECHO_SERVER, subnet="10.213.7.0/30")
    assert first["address"] == "10.213.7.2"
    err = lab.up(ECHO_SERVER, subnet="10.213.7.0/30", expect_ok=False)
    assert "no free address in 10.213.7.0/30 on bridge minirun0: all 1 are leased" in err
    assert lab.ns.links() == {"lo", "minirun0", first["host_veth"]}
    assert lab.leases() == ["minirun0/10.213.7.2"]
    lab.down(first["cid"])
    lab.assert_clean()


def test_port_already_published(lab: Lab, netns) -> None:
    outside = netns("out")
    uplink = link_namespaces(lab.ns, OUTSIDE_HOST, outside, OUTSIDE_CLIENT)
    first = lab.up(ECHO_SERVER, publish=["8080:7"])
    rules = lab.ns.ruleset()
    err = lab.up(ECHO_SERVER, publish=["9090:7", "8080:7"], expect_ok=False)
    assert f"host port 8080/tcp is already published by container {first['cid']!r}" in err
    assert len(err.strip().splitlines()) == 1, err
    assert lab.ns.ruleset() == rules  # the failed set-up's transaction left no trace
    assert lab.leases() == ["minirun0/10.213.0.2"]
    assert lab.ns.links() == {"lo", "minirun0", first["host_veth"], uplink}
    got = outside.run(BUSYBOX, "nc", "-w", "3", OUTSIDE_HOST, "8080", input="still-first\n")
    assert got.stdout == "still-first\n"


def test_existing_interface_of_the_same_name(lab: Lab) -> None:
    cid = lab.ctx.new_id()
    veth = network.host_veth_name(str(lab.root), cid)
    # someone else's veth with the name, unmarked: teardown must not take it either
    lab.ns.run("ip", "link", "add", veth, "type", "veth", "peer", "name", "other")
    err = lab.up(ECHO_SERVER, cid=cid, expect_ok=False)
    assert f"cannot create interface {veth}: an interface of that name already exists" in err
    lab.assert_clean(keep={"lo", veth, "other"})  # the bridge it made is gone


def test_eth0_already_in_a_joined_namespace(lab: Lab, netns) -> None:
    joined = netns("joined")
    joined.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other")

    def join(cfg: dict) -> None:
        with_net_raw(cfg)
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = joined.path

    err = lab.up(["sleep", "600"], config_edits=join, expect_ok=False)
    assert ("cannot create interface eth0 in the container's network namespace: an "
            "interface of that name already exists") in err
    lab.assert_clean()
    assert joined.links() == {"lo", "eth0", "other"}


def test_bridge_name_that_is_not_a_bridge(lab: Lab) -> None:
    lab.ns.run("ip", "link", "add", "minirun0", "type", "veth", "peer", "name", "other")
    err = lab.up(ECHO_SERVER, expect_ok=False)
    assert "--bridge minirun0: an interface minirun0 exists and is a veth, not a bridge" in err
    lab.assert_clean(keep={"lo", "minirun0", "other"})


def test_address_outside_the_bridge_subnet(lab: Lab) -> None:
    first = lab.up(ECHO_SERVER)
    err = lab.up(ECHO_SERVER, ip="10.99.0.5", expect_ok=False)
    assert "--ip (bridge minirun0): address 10.99.0.5 is outside the subnet 10.213.0.0/24" in err
    err = lab.up(ECHO_SERVER, subnet="10.98.0.0/24", expect_ok=False)
    assert "--subnet 10.98.0.0/24: bridge minirun0 exists with another subnet" in err
    err = lab.up(ECHO_SERVER, ip=first["address"], expect_ok=False)
    assert f"address already leased to container {first['cid']!r}" in err
    assert lab.leases() == ["minirun0/10.213.0.2"]
    assert lab.ns.links() == {"lo", "minirun0", first["host_veth"]}
    fixed = lab.up(ECHO_SERVER, ip="10.213.0.77")
    assert fixed["address"] == "10.213.0.77"
    lab.down(first["cid"])
    lab.down(fixed["cid"])
    lab.assert_clean()


def test_subnet_overlapping_an_address_here(lab: Lab, netns) -> None:
    outside = netns("out")
    uplink = link_namespaces(lab.ns, OUTSIDE_HOST, outside, OUTSIDE_CLIENT)
    err = lab.up(ECHO_SERVER, subnet="192.0.2.0/25", expect_ok=False)
    assert f"--subnet 192.0.2.0/25 overlaps 192.0.2.1/24 on {uplink}" in err
    lab.assert_clean(keep={"lo", uplink})


def test_container_without_a_network_namespace(lab: Lab) -> None:
    def no_netns(cfg: dict) -> None:
        with_net_raw(cfg)
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "network"]

    err = lab.up(["sleep", "600"], config_edits=no_netns, expect_ok=False)
    assert "the container shares the runtime's network namespace" in err
    lab.assert_clean()


def test_custom_bridge_and_subnet(lab: Lab) -> None:
    a = lab.up(ECHO_SERVER, bridge="lab1", subnet="10.213.50.0/28")
    assert (a["bridge"], a["address"], a["gateway"]) == ("lab1", "10.213.50.2", "10.213.50.1")
    b = lab.up(["sh", "-c", f"echo hi | nc -w 3 {a['address']} 7"], bridge="lab1")
    assert b["subnet"] == "10.213.50.0/28"  # the existing bridge's subnet, unasked
    assert lab.wait_output(b["cid"]) == "hi\n"
    lab.down(a["cid"])
    assert "lab1" in lab.ns.links()  # b still leases an address on it
    lab.down(b["cid"])
    lab.assert_clean()


# --------------------------------------------------------------------------
# Through the command line (`create`/`run --network`), once it is wired
# --------------------------------------------------------------------------


@pytest.fixture
def cli(lab: Lab) -> Callable[..., subprocess.CompletedProcess]:
    """``cli(*args)``: minirun in the lab namespace, output through files (a created
    container keeps what it inherits open). Skips until `create` has --network."""
    usage = subprocess.run([lab.rt.binary, "create", "--help"], capture_output=True,
                           text=True).stdout
    if "--network" not in usage:
        pytest.skip("minirun create has no --network flag yet (wiring of issue 5)")
    n = [0]

    def run(*args: str) -> subprocess.CompletedProcess:
        n[0] += 1
        out, err = lab.ctx.tmp / f"cli-{n[0]}.out", lab.ctx.tmp / f"cli-{n[0]}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            rc = subprocess.run(["nsenter", f"--net={lab.ns.path}", "--", lab.rt.binary,
                                 "--root", str(lab.root), *args], stdin=subprocess.DEVNULL,
                                stdout=o, stderr=e, timeout=TIMEOUT).returncode
        return subprocess.CompletedProcess(args, rc, out.read_text(), err.read_text())

    return run


def test_without_network_the_container_sees_only_lo(run_container) -> None:
    r = run_container(["cat", "/proc/net/dev"], check=True)
    assert [line.split(":")[0].strip() for line in r.stdout.splitlines()[2:]] == ["lo"]


def test_cli_network_none_sees_only_lo(lab: Lab, cli) -> None:
    b = lab.bundle(["cat", "/proc/net/dev"])
    r = cli("run", "--network", "none", "--bundle", str(b), lab.ctx.new_id())
    assert r.returncode == 0, r.stderr
    assert [line.split(":")[0].strip() for line in r.stdout.splitlines()[2:]] == ["lo"]
    lab.assert_clean()


def test_cli_run_with_bridge_and_publish(lab: Lab, cli) -> None:
    b = lab.bundle(["sh", "-c", "ip -o -4 addr show eth0; ip route"])
    r = cli("run", "--network", "bridge", "--publish", "8080:80", "--bundle", str(b),
            lab.ctx.new_id())
    assert r.returncode == 0, r.stderr
    assert "inet 10.213.0.2/24" in r.stdout and "default via 10.213.0.1" in r.stdout
    lab.assert_clean()  # run deletes the container, and its network with it


def test_cli_bridge_from_annotation(lab: Lab, cli) -> None:
    b = lab.bundle(["sh", "-c", "ip -o -4 addr show eth0"],
                   {"annotations": {"org.minirun.network": "bridge"}})
    r = cli("run", "--bundle", str(b), lab.ctx.new_id())
    assert r.returncode == 0, r.stderr
    assert "inet 10.213.0.2/24" in r.stdout
    lab.assert_clean()


def test_cli_state_list_and_delete_after_sigkill(lab: Lab, cli) -> None:
    cid = lab.ctx.new_id()
    b = lab.bundle(ECHO_SERVER)
    r = cli("create", "--network", "bridge", "--publish", "8080:7", "--bundle", str(b), cid)
    assert r.returncode == 0, r.stderr
    assert "10.213.0.2" in cli("state", cid).stdout
    assert "10.213.0.2" in cli("list", "--format", "json").stdout
    assert "10.213.0.2" in cli("list").stdout
    pid = lab.pid(cid)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    r = cli("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    lab.assert_clean()


def test_cli_delete_leaves_the_kernel_work_to_a_background_process(lab: Lab, cli) -> None:
    """`delete` does not wait for the teardown's kernel work (veth, bridge and table
    removal wait for RCU grace periods): a detached process does it, holding the lease
    lock that every set-up takes first. Killed here before it could work, it leaves
    the lease, which names all there is to remove: the next set-up reclaims it."""
    cid = lab.ctx.new_id()
    b = str(lab.bundle(ECHO_SERVER))
    r = cli("create", "--network", "bridge", "--publish", "8080:7", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "MINIRUN_FAULT_AT": "network teardown in the background"}
    p = subprocess.run(["nsenter", f"--net={lab.ns.path}", "--", lab.rt.binary, "--root",
                        str(lab.root), "delete", "--force", cid], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert (p.returncode, p.stderr) == (0, "")
    lab.settled()  # the background process is gone (killed at its start)
    assert "dnat to 10.213.0.2:7" in lab.ns.ruleset()
    assert lab.leases() == ["minirun0/10.213.0.2"]
    again = lab.ctx.new_id()
    r = cli("create", "--network", "bridge", "--publish", "8080:7", "--bundle", b, again)
    assert r.returncode == 0, r.stderr  # port 8080 and the address are free again
    assert "10.213.0.2" in cli("state", again).stdout
    assert lab.ns.ruleset().count("dnat to 10.213.0.2:7") == 1
    r = cli("delete", "--force", again)
    assert r.returncode == 0, r.stderr
    lab.assert_clean()


def test_cli_setup_in_a_helper_started_early(lab: Lab, cli) -> None:
    """`create` forks a helper as soon as the request is read: it imports the netlink
    and nftables code while the container is made, then does the set-up, whose steps
    reach the runtime's trace. If it dies, create fails in one line, leaving nothing."""
    b = str(lab.bundle(ECHO_SERVER))
    cid, trace_file = lab.ctx.new_id(), lab.ctx.tmp / "trace.json"
    r = cli("create", "--network", "bridge", "--trace", str(trace_file), "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    names = [e["name"] for e in json.loads(trace_file.read_text())["traceEvents"]]
    assert "veth pair, eth0 address and route" in names, names
    assert cli("delete", "--force", cid).returncode == 0
    lab.assert_clean()
    env = {**os.environ, "MINIRUN_FAULT_AT": "import pyroute2's rtnl messages (helper)"}
    cid = lab.ctx.new_id()
    p = subprocess.run(["nsenter", f"--net={lab.ns.path}", "--", lab.rt.binary, "--root",
                        str(lab.root), "create", "--network", "bridge", "--bundle", b, cid],
                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    assert p.returncode != 0
    assert p.stderr.splitlines() == [p.stderr.strip()], p.stderr
    assert "network set-up: its helper process" in p.stderr
    assert "died: killed by signal 9" in p.stderr
    assert not (lab.root / cid).exists()
    lab.assert_clean()


def test_cli_helper_steps_on_a_track_of_their_own(lab: Lab, cli) -> None:
    """The helper forked at program start (the command line asks for a bridge) sends
    its steps, its imports included, to the runtime's trace, on track 4, while the
    runtime's own "network" phase (its wait for them) stays on track 1."""
    b = str(lab.bundle(["true"]))
    trace_file = lab.ctx.tmp / "trace.json"
    r = cli("run", "--network", "bridge", "--trace", str(trace_file), "--bundle", b,
            lab.ctx.new_id())
    assert r.returncode == 0, r.stderr
    events = json.loads(trace_file.read_text())["traceEvents"]
    tracks = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M"}
    assert tracks[4] == "network helper", tracks
    on = {name: {e["pid"] for e in events if e["name"] == name}
          for name in ("import pyroute2's rtnl messages (helper)", "bridge and address lease",
                       "veth pair, eth0 address and route", "network")}
    assert on == {"import pyroute2's rtnl messages (helper)": {4},
                  "bridge and address lease": {4}, "veth pair, eth0 address and route": {4},
                  "network": {1}}, on
    lab.assert_clean()


def test_cli_network_is_up_before_the_hooks_and_the_sysctls(lab: Lab, cli) -> None:
    """The helper sets the network up while the init builds its root filesystem, and
    the init waits for it before its hooks and sysctls, as in the network namespace an
    engine makes before it runs the runtime: a createContainer hook sees eth0, and a
    sysctl of eth0 applies."""
    def edits(cfg: dict) -> None:
        cfg["hooks"] = {"createContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "cat /proc/net/dev > hook-saw"]}]}
        cfg["linux"]["sysctl"] = {"net.ipv4.conf.eth0.rp_filter": "2"}

    b = lab.bundle(["cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"], edits)
    r = cli("run", "--network", "bridge", "--bundle", str(b), lab.ctx.new_id())
    assert (r.returncode, r.stdout.strip()) == (0, "2"), r.stderr
    assert "eth0:" in (b / "rootfs" / "hook-saw").read_text()
    lab.assert_clean()


def test_cli_create_failing_while_the_helper_works_leaves_nothing(lab: Lab, cli) -> None:
    """The init fails (a mount) after the helper was told its pid: the helper finishes
    what it was doing, and the teardown removes it all; the error is the init's."""
    def edits(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=banana"]})

    b = lab.bundle(["true"], edits)
    cid = lab.ctx.new_id()
    r = cli("run", "--network", "bridge", "--publish", "8080:80", "--bundle", str(b), cid)
    assert r.returncode != 0
    assert r.stderr.splitlines() == [r.stderr.strip()], r.stderr
    assert "mount /x (mounts[7])" in r.stderr, r.stderr
    assert not (lab.root / cid).exists()
    lab.assert_clean()


def test_cli_helper_pipes_stay_clear_of_preserved_fds(lab: Lab, cli) -> None:
    """--preserve-fds N hands fds 3..3+N-1 to the container: the early helper's pipes,
    made before anything else, must not land there (the container could then talk to
    the helper), and the check that those fds exist must still see them closed."""
    b = str(lab.bundle(["true"]))
    r = cli("run", "--network", "bridge", "--preserve-fds", "4", "--bundle", b,
            lab.ctx.new_id())
    assert r.returncode != 0
    assert "preserved-fd" in r.stderr and "fd 3: Bad file descriptor" in r.stderr, r.stderr
    lab.assert_clean()


def test_cli_bridge_run_keeps_the_heavy_imports_in_the_helper(lab: Lab) -> None:
    """The runtime of a bridge `run` imports none of what the helper loads: the helper
    does the network work, and what the runtime says to it goes through minirun.lite's
    json (the real one, with re and enum, costs 7-20 ms of a run here: issue 11)."""
    heavy = ("json", "re", "enum", "collections", "typing", "ipaddress", "logging",
             "socket", "subprocess", "pyroute2", "pyroute2.netlink")
    code = (f"import os, sys; sys.path[:0] = {sys.path!r}\n"
            "import minirun.entry as entry\n"
            "def exit_now(code):\n"
            f"    print(sorted(m for m in {heavy!r} if m in sys.modules), code, flush=True)\n"
            "    os._exit(code)\n"
            "entry.exit_now = exit_now\n"
            "sys.argv[0] = 'minirun'\n"
            "entry.main()\n")
    b = str(lab.bundle(["true"]))
    p = subprocess.run(["nsenter", f"--net={lab.ns.path}", "--", sys.executable, "-IS", "-c",
                        code, "--root", str(lab.root), "run", "--network", "bridge",
                        "--publish", "8080:80", "--bundle", b, lab.ctx.new_id()],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert (p.returncode, p.stdout, p.stderr) == (0, "[] 0\n", ""), p
    lab.assert_clean()


def test_cli_run_has_its_set_up_helper_tear_down(lab: Lab, cli) -> None:
    """A foreground `run` hands the teardown to the helper that did the set-up (its
    imports are done): killed here once it holds the lease lock, it leaves the lease,
    and `run` has succeeded all the same; the next set-up reclaims what it names."""
    b = str(lab.bundle(["true"]))
    env = {**os.environ, "MINIRUN_FAULT_AT": "network teardown by the set-up helper"}
    p = subprocess.run(["nsenter", f"--net={lab.ns.path}", "--", lab.rt.binary, "--root",
                        str(lab.root), "run", "--network", "bridge", "--publish", "8080:7",
                        "--bundle", b, lab.ctx.new_id()], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert (p.returncode, p.stderr) == (0, "")
    lab.settled()
    assert "dnat to 10.213.0.2:7" in lab.ns.ruleset()
    assert lab.leases() == ["minirun0/10.213.0.2"]
    r = cli("run", "--network", "bridge", "--publish", "8080:7", "--bundle", b,
            lab.ctx.new_id())
    assert r.returncode == 0, r.stderr
    lab.assert_clean()


def test_cli_bad_flags_leave_nothing(lab: Lab, cli) -> None:
    b = lab.bundle(ECHO_SERVER)
    for flags, message in ((["--subnet", "10.0.0.1/24"], "--subnet: invalid subnet"),
                           (["--publish", "80"], "--publish: invalid port mapping"),
                           (["--bridge", "a/b"], "--bridge: invalid bridge name")):
        r = cli("create", "--network", "bridge", *flags, "--bundle", str(b), lab.ctx.new_id())
        assert r.returncode != 0 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not lab.root.exists() or os.listdir(lab.root) == []
    lab.assert_clean()

