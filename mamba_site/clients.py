"""Pure: who the client is, for per-client limits. Its IP address, taken from X-Forwarded-For
only through trusted proxies, so that a forged header cannot reset a limit; IPv6 clients are
grouped by /64 (one household or host usually holds a whole /64)."""

import functools
import ipaddress
from dataclasses import dataclass

type Address = ipaddress.IPv4Address | ipaddress.IPv6Address
type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_GROUP_PREFIX = 64
# The address of a request that has none (a Unix socket): all of them share one client.
UNKNOWN_CLIENT = "unknown"


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Either a number of proxies in front (each appends its peer to X-Forwarded-For) or the
    networks proxies connect from; neither: X-Forwarded-For is ignored."""

    hops: int = 0
    networks: tuple[Network, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hops or self.networks)


@functools.lru_cache(maxsize=8)
def trusted_proxies_parse(value: str) -> TrustedProxies:
    """`""` (none), a hop count (`"1"`) or CIDRs and addresses (`"10.0.0.0/8, fd00::/8"`);
    raises `ValueError`."""
    text = value.strip()
    if not text:
        return TrustedProxies()
    if text.isdigit():
        return TrustedProxies(hops=int(text))
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is neither a hop count nor a CIDR or address.") from None
    return TrustedProxies(networks=tuple(networks))


def address_parse(value: str) -> Address | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
    `2001:db8::1`), IPv4-mapped IPv6 as IPv4; None when it is not one."""
    text = value.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    remote_addr: str, forwarded_for: str | None, trusted: TrustedProxies
) -> Address | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    X-Forwarded-For entry the proxies vouch for (never one a client could have written)."""
    peer = address_parse(remote_addr)
    if peer is None or not trusted or not forwarded_for:
        return peer
    entries = forwarded_for.split(",")
    if trusted.hops:
        # [client-written..., client, proxy 1, ..., proxy n-1] + peer (proxy n): the client is
        # n places left of the peer; with fewer entries, the request bypassed some proxies.
        chain = [*entries, remote_addr]
        index = max(0, len(chain) - 1 - trusted.hops)
        # A malformed entry there: the nearest well-formed one to its right (the proxies').
        for entry in chain[index:]:
            vouched = address_parse(entry)
            if vouched is not None:
                return vouched
        return peer
    candidate = peer
    while _trusted(candidate, trusted.networks) and entries:
        previous = address_parse(entries.pop())
        if previous is None:  # written by a trusted proxy? Not an address: stop at that proxy
            return candidate
        candidate = previous
    return candidate


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_group(address: Address | None) -> str:
    """The identity per-client limits count under: an IPv4 address, or an IPv6 /64."""
    if address is None:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_GROUP_PREFIX), strict=False))
    return str(address)
