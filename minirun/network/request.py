"""What a container asks of the network, from `create`/`run` flags and config.json
annotations, validated before anything is touched.

This module is on every `create`'s path: it imports nothing beyond the standard
library's cheapest modules, and a container that asks for no network costs two dict
look-ups. `ipaddress` and `re` are imported only when there is something to parse.
"""

from minirun.errors import MinirunError

ANNOTATION = "org.minirun.network"
DEFAULT_BRIDGE = "minirun0"
# Chosen clear of the ranges engines and clusters take by default: docker 172.17/16
# (and 172.18-31 for its networks), podman 10.88/16, CNI examples 10.22/16, flannel and
# k8s pods 10.244/16, k8s services 10.96/12, kind 10.96/12, calico 192.168/16, lxc
# 10.0.3/24, libvirt 192.168.122/24.
DEFAULT_SUBNET = "10.213.0.0/24"
MODES = ("none", "bridge")
PROTOCOLS = ("tcp", "udp")

# option -> (flag, annotation): how each option is named in error messages
_OPTIONS = {
    "network": ("--network", ANNOTATION),
    "publish": ("--publish", ANNOTATION + ".publish"),
    "subnet": ("--subnet", ANNOTATION + ".subnet"),
    "bridge": ("--bridge", ANNOTATION + ".bridge"),
    "ip": ("--ip", ANNOTATION + ".ip"),
}

Publish = tuple[int, int, str]  # (host port, container port, protocol)

# Bridge names: checked by hand, not with re (~3 ms to import on create's path).
_NAME_REST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NAME_FIRST = _NAME_REST - {".", "-"}


class NetworkRequest:
    """A validated request for bridge networking.

    subnet None means "the bridge's own subnet if the bridge exists, else
    DEFAULT_SUBNET"; address None means "the lowest free address of the subnet".
    """

    __slots__ = ("mode", "bridge", "subnet", "address", "publish")

    def __init__(self, mode: str = "bridge", bridge: str = DEFAULT_BRIDGE,
                 subnet: str | None = None, address: str | None = None,
                 publish: list[Publish] | None = None) -> None:
        self.mode = mode
        self.bridge = bridge
        self.subnet = subnet
        self.address = address
        self.publish = list(publish or [])

    @property
    def gateway(self) -> str | None:
        """The bridge's address in an explicit subnet: its first host (.1)."""
        if self.subnet is None:
            return None
        return gateway_of(self.subnet)

    def to_dict(self) -> dict:
        """JSON-serialisable; also the record to store before `setup` runs, so that a
        `delete` after a crashed `create` knows there is networking to tear down."""
        return {"mode": self.mode, "bridge": self.bridge, "subnet": self.subnet,
                "address": self.address,
                "publish": [{"host_port": h, "container_port": c, "proto": p}
                            for h, c, p in self.publish]}

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkRequest":
        """The request to_dict() wrote (sent to the network helper)."""
        return cls(d["mode"], d["bridge"], d["subnet"], d["address"],
                   [(p["host_port"], p["container_port"], p["proto"]) for p in d["publish"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NetworkRequest) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"NetworkRequest({self.to_dict()!r})"


def request_from(flags: dict, annotations: dict) -> NetworkRequest | None:
    """The network a container asks for; None for mode `none` or nothing asked.

    flags: {'network', 'publish', 'subnet', 'bridge', 'ip'} from the command line
    (None or [] when not given); annotations: config.json's. Each flag wins over
    its annotation. Raises MinirunError naming the flag or annotation at fault.
    """
    flags = flags or {}
    annotations = annotations or {}
    if not any(flags.values()) and not any(k.startswith(ANNOTATION) for k in annotations):
        return None  # the default path: nothing to parse
    picked = {name: _pick(name, flags, annotations) for name in _OPTIONS}
    mode, mode_src = picked["network"]
    mode = mode or "none"
    if mode not in MODES:
        raise MinirunError(f"{mode_src}: unknown network mode {mode!r} "
                           f"(known: {', '.join(MODES)})")
    if mode == "none":
        _refuse_options_without_bridge(picked, explicit_none=flags.get("network") == "none")
        return None
    subnet = _subnet(*picked["subnet"])
    req = NetworkRequest(
        bridge=_bridge_name(*picked["bridge"]),
        subnet=subnet,
        address=_address(*picked["ip"], subnet),
        publish=_publish_list(*picked["publish"]),
    )
    return req


def _pick(name: str, flags: dict, annotations: dict) -> tuple:
    """(value, where it came from) for one option; the flag wins."""
    flag, annotation = _OPTIONS[name]
    value = flags.get(name)
    if value:
        return value, flag
    value = annotations.get(annotation)
    if value is not None and value != "":
        return value, f"annotation {annotation}"
    return None, flag


def _refuse_options_without_bridge(picked: dict, explicit_none: bool) -> None:
    """Options that only mean something for `bridge` are an error without it, except
    annotations overridden by an explicit `--network none` (the flag wins)."""
    for name, (value, src) in picked.items():
        if name == "network" or value is None:
            continue
        if explicit_none and src.startswith("annotation "):
            continue
        raise MinirunError(f"{src}: needs --network bridge (or annotation "
                           f"{ANNOTATION}=bridge); the container's network is 'none'")


def _bridge_name(value: str | None, src: str) -> str:
    if value is None:
        return DEFAULT_BRIDGE
    # An interface name the kernel accepts (< 16 bytes, no '/', ':' or blanks), kept
    # to characters that need no quoting in nft or in a shell.
    if not (0 < len(value) <= 15 and value[0] in _NAME_FIRST
            and all(c in _NAME_REST for c in value)):
        raise MinirunError(f"{src}: invalid bridge name {value!r}: use 1 to 15 letters, "
                           "digits and _ . - (not starting with . or -)")
    return value


def _subnet(value: str | None, src: str) -> str | None:
    if value is None:
        return None
    import ipaddress  # ~5 ms with what it pulls in: only when there is one to parse

    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        why = str(e)
        if "has host bits set" in why:
            loose = ipaddress.ip_network(value, strict=False)
            why = f"host bits are set (did you mean {loose}?)"
        raise MinirunError(f"{src}: invalid subnet {value!r}: {why}") from None
    if net.version != 4:
        raise MinirunError(f"{src}: subnet {value}: only IPv4 subnets are supported")
    if net.prefixlen > 30:
        raise MinirunError(f"{src}: subnet {value} is too small: a /{net.prefixlen} has no "
                           "room for a gateway and a container (at most /30)")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified \
            or net.network_address.is_unspecified or net.is_reserved:
        raise MinirunError(f"{src}: subnet {value} is not usable for containers "
                           "(loopback, multicast, link-local or reserved)")
    return str(net)


def _address(value: str | None, src: str, subnet: str | None) -> str | None:
    if value is None:
        return None
    import ipaddress

    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise MinirunError(f"{src}: invalid IPv4 address {value!r}") from None
    if subnet is not None:  # otherwise `setup` checks it against the bridge's subnet
        check_address(str(addr), subnet, src)
    return str(addr)


def check_address(address: str, subnet: str, src: str, gateway: str | None = None) -> None:
    """An address a container may have in subnet: inside it, and neither the network,
    broadcast nor gateway address (the bridge's; .1 unless the bridge says otherwise)."""
    import ipaddress

    addr, net = ipaddress.IPv4Address(address), ipaddress.IPv4Network(subnet)
    if addr not in net:
        raise MinirunError(f"{src}: address {addr} is outside the subnet {net}")
    if addr in (net.network_address, net.broadcast_address):
        raise MinirunError(f"{src}: address {addr} is the network or broadcast address "
                           f"of {net}")
    if str(addr) == (gateway or gateway_of(subnet)):
        raise MinirunError(f"{src}: address {addr} is the gateway (the bridge) of {net}")


def gateway_of(subnet: str) -> str:
    from minirun.network import ipv4

    return ipv4.first_host(subnet)


def _publish_list(value: str | list | None, src: str) -> list[Publish]:
    """Flags come as a list (repeatable), the annotation as one comma-separated
    string; both accept commas."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[Publish] = []
    seen: dict[tuple[int, str], str] = {}
    for item in items:
        for spec in str(item).split(","):
            spec = spec.strip()
            if not spec:
                continue
            host, cport, proto = parse_publish(spec, src)
            if (host, proto) in seen:
                raise MinirunError(f"{src}: host port {host}/{proto} is published twice "
                                   f"({seen[(host, proto)]!r} and {spec!r})")
            seen[(host, proto)] = spec
            out.append((host, cport, proto))
    return out


def parse_publish(spec: str, src: str = "--publish") -> Publish:
    """HOSTPORT:CONTAINERPORT[/tcp|udp] -> (host port, container port, protocol)."""
    ports, slash, proto = spec.partition("/")
    host_s, colon, cport_s = ports.partition(":")
    proto_ok = not slash or (proto.isascii() and proto.isalpha() and proto.islower())
    if not (colon and proto_ok and _is_port_digits(host_s) and _is_port_digits(cport_s)):
        raise MinirunError(f"{src}: invalid port mapping {spec!r}: expected "
                           "HOSTPORT:CONTAINERPORT[/tcp|/udp], e.g. 8080:80/tcp")
    host, cport, proto = int(host_s), int(cport_s), proto or "tcp"
    if proto not in PROTOCOLS:
        raise MinirunError(f"{src}: {spec!r}: unknown protocol {proto!r} (tcp or udp)")
    for port in (host, cport):
        if not 1 <= port <= 65535:
            raise MinirunError(f"{src}: {spec!r}: port {port} is out of range (1-65535)")
    return host, cport, proto


def _is_port_digits(text: str) -> bool:
    """1 to 5 ASCII digits (the range is checked once it is a number)."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()
