"""NAT for bridge networking, in an nftables table of minirun's own, `ip minirun`:

    map ports          inet_proto . inet_service : verdict   host port -> jump c-CONTAINER
    chain prerouting   nat, dstnat: published ports on any local address
    chain output       nat, -100: the same for connections made on this host
    chain b-BRIDGE     nat, srcnat, one base chain per bridge:
                         ip saddr SUBNET oifname != BRIDGE masquerade   (going out)
                         ip saddr SUBNET ct status dnat masquerade     (a container
                         reaching a published port, its own included: the reply must
                         come back through here to be un-DNATed)
    chain c-CONTAINER  one dnat rule per published port

All that belongs to a container is its chain and the map elements that jump to it; to
a bridge, its chain. Removal is exact and by name: no rule handle to remember, none
that could point at someone else's rule later. Each change is one `nft -f`
transaction, applied whole or not at all. A published port is a map key made with
`create element`, which fails if the key exists: two containers cannot publish one
port, even racing. Masquerade matches on the source subnet, never on iifname: with
br_netfilter loaded (docker loads it), bridged packets reach postrouting without an
input interface.

The firewall goes through libnftables' own parser (sturdier than hand-built nf_tables
netlink messages): in this process, through ctypes (~0.6 ms a transaction, the library
loaded in ~2 ms), or, where the library cannot be loaded, through the `nft` program
(subprocess and nft's own start: ~7 ms).
"""

import os

from minirun.errors import MinirunError
from minirun.lite import json

FAMILY = "ip"
TABLE = "minirun"
_T = f"{FAMILY} {TABLE}"

# Idempotent: `add` of what exists is a no-op, and the base chains are flushed before
# their one rule is added again, in the same transaction (so no packet sees a gap).
_BASE = f"""\
add table {_T}
add map {_T} ports {{ type inet_proto . inet_service : verdict ; }}
add chain {_T} prerouting {{ type nat hook prerouting priority dstnat ; policy accept ; }}
add chain {_T} output {{ type nat hook output priority -100 ; policy accept ; }}
flush chain {_T} prerouting
add rule {_T} prerouting fib daddr type local meta l4proto . th dport vmap @ports
flush chain {_T} output
add rule {_T} output ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport \
vmap @ports
"""
_BASE_CHAINS = {"prerouting", "output"}


def bridge_chain(bridge: str) -> str:
    return f"b-{bridge}"


class Table:
    """What `nft -j list table ip minirun` shows, reduced to what removal needs."""

    def __init__(self, listing: dict | None) -> None:
        self.exists = listing is not None
        self.chains: set[str] = set()
        self.ports: dict[tuple[str, int], str] = {}  # (proto, host port) -> chain
        for item in (listing or {}).get("nftables", []):
            if "chain" in item:
                self.chains.add(item["chain"]["name"])
            elif "map" in item:
                self._map(item["map"])

    def _map(self, m: dict) -> None:
        if m["name"] != "ports":
            return
        for key, verdict in m.get("elem", []):
            proto, port = key["concat"]
            self.ports[(proto, int(port))] = verdict.get("jump", {}).get("target")

    def unused(self) -> bool:
        """Nothing of any container or bridge left: only the base remains."""
        return not (self.ports or self.chains - _BASE_CHAINS)


def read_table() -> Table:
    out = _nft(f"list table {_T}\n", "list the table", as_json=True, missing_ok=True)
    return Table(json.loads(out) if out else None)


def add_container(chain: str, cid: str, bridge: str, subnet: str, address: str,
                  publish: list[tuple[int, int, str]]) -> None:
    """The base, the bridge's masquerade and the container's port mappings, in one
    transaction. Fails whole if a host port is already published."""
    bchain = bridge_chain(bridge)
    lines = [
        _BASE,
        f"add chain {_T} {bchain} {{ type nat hook postrouting priority srcnat ; "
        "policy accept ; }",
        f"flush chain {_T} {bchain}",
        f'add rule {_T} {bchain} ip saddr {subnet} oifname != "{bridge}" masquerade',
        f"add rule {_T} {bchain} ip saddr {subnet} ct status dnat masquerade",
        f'add chain {_T} {chain} {{ comment "minirun container {cid[:200]}" ; }}',
    ]
    for host, cport, proto in publish:
        lines.append(f"add rule {_T} {chain} meta l4proto {proto} th dport {host} "
                     f"dnat to {address}:{cport}")
        lines.append(f"create element {_T} ports {{ {proto} . {host} : jump {chain} }}")
    _nft("\n".join(lines) + "\n", f"publish the ports of container {cid!r}")


def taken_ports(publish: list[tuple[int, int, str]]) -> dict[tuple[str, int], str]:
    """(proto, host port) -> the chain that holds it, for the wanted ports already
    published: tells why add_container failed."""
    table = read_table()
    return {(p, h): table.ports[(p, h)] for h, _, p in publish if (p, h) in table.ports}


def remove(chains: list[str], bridges: list[str]) -> None:
    """Containers' chains (with the map elements that jump to them) and bridges'
    masquerade, in one listing and one transaction; the whole table instead once
    nothing else is in it. What is already gone is skipped: removal is idempotent."""
    table = read_table()
    if not table.exists:
        return
    lines = []
    for chain in chains:
        lines += [f"delete element {_T} ports {{ {p} . {h} }}"
                  for (p, h), target in list(table.ports.items()) if target == chain]
        table.ports = {k: t for k, t in table.ports.items() if t != chain}
    for chain in [*chains, *map(bridge_chain, bridges)]:
        if chain in table.chains:
            lines.append(f"delete chain {_T} {chain}")
            table.chains.discard(chain)
    if table.unused():
        lines = [f"delete table {_T}"]
    if lines:
        _nft("\n".join(lines) + "\n",
             f"remove the rules of {', '.join([*chains, *map(bridge_chain, bridges)])}")


def _nft(script: str, what: str, as_json: bool = False, missing_ok: bool = False) -> str:
    """Run an nft script as one transaction; its output (JSON if as_json)."""
    lib = _libnftables()
    ok, out, err = (_run_lib(lib, script, as_json) if lib is not None
                    else _run_program(script, as_json, what))
    if ok:
        return out
    if missing_ok and "No such file or directory" in err:
        return ""
    raise MinirunError(f"nftables: {what}: {_first_error(err)}")


_LIB: list = []  # [] until tried; then [(lib, ctx)] or [None]
NFT_CTX_OUTPUT_JSON = 1 << 4


def _libnftables():
    """libnftables (the nft program's own library) and a context, or None."""
    if not _LIB:
        import ctypes

        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            _LIB.append(None)
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx:
            _LIB.append(None)
            return None
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        _LIB.append((lib, ctx))
    return _LIB[0]


def load() -> None:
    """Load libnftables now rather than at the first transaction."""
    _libnftables()


def forget_library() -> None:
    """Load libnftables afresh on next use (a forked child that closed its fds)."""
    _LIB.clear()


def _run_lib(handle, script: str, as_json: bool) -> tuple[bool, str, str]:
    lib, ctx = handle
    lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON if as_json else 0)
    rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    return rc == 0, out, err


def _run_program(script: str, as_json: bool, what: str) -> tuple[bool, str, str]:
    import subprocess

    try:
        p = subprocess.run([_nft_path(), *(["-j"] if as_json else []), "-f", "-"],
                           input=script, capture_output=True, text=True, check=False)
    except OSError as e:
        raise MinirunError(f"nftables: {what}: cannot run nft: {e.strerror}") from None
    return p.returncode == 0, p.stdout, p.stderr


def _nft_path() -> str:
    import shutil

    path = shutil.which("nft") or "/usr/sbin/nft"
    if not os.path.exists(path):
        raise MinirunError("nftables: the nft command is missing (Debian: apt-get install "
                           "nftables); --network bridge needs it for NAT and --publish")
    return path


def _first_error(stderr: str) -> str:
    """nft prints `FILE:LINE:COL: Error: WHY`, the offending line, then carets: one
    line of that, with the statement that failed."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if "Error:" in line:
            why = line.split("Error:", 1)[1].strip()
            stmt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return f"{why} (in: {stmt})" if stmt else why
    return stderr.strip().replace("\n", "; ") or "nft failed"
