"""IP addresses and CIDRs as Go's net/netip reads them (the Kubernetes ip and cidr libraries).

IPv4-mapped IPv6 addresses and zones are refused, as kube's library refuses them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from kext.cel.library import Function, Overload, global_, member, types

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class IPError(ValueError):
    pass


def parse_ip(text: str) -> Address:
    if "%" in text:
        raise IPError(f"IP address with zone value is not allowed: {text}")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as exc:
        raise IPError(f'IP Address "{text}" parse error during conversion from string: '
                      f"ParseAddr({text!r}): {exc}") from exc
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise IPError(f"IPv4-mapped IPv6 address is not allowed: {text}")
    return addr


def is_ip(text: str) -> bool:
    try:
        parse_ip(text)
    except IPError:
        return False
    return True


def is_canonical(text: str) -> bool:
    return str(parse_ip(text)) == text


def family(addr: Address) -> int:
    return addr.version


def is_link_local_multicast(addr: Address) -> bool:
    if addr.version == 4:
        return addr in ipaddress.ip_network("224.0.0.0/24")
    return addr in ipaddress.ip_network("ff02::/16")


def is_global_unicast(addr: Address) -> bool:
    """Go's IsGlobalUnicast: not unspecified, loopback, multicast, link-local or broadcast."""
    if addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"):
        return False
    return not (addr.is_unspecified or addr.is_loopback or addr.is_multicast
                or addr.is_link_local)


def parse_cidr(text: str) -> Interface:
    if "%" in text:
        raise IPError(f"CIDR with zone value is not allowed: {text}")
    addr, slash, bits = text.partition("/")
    if not slash or not bits.isdigit() or (len(bits) > 1 and bits.startswith("0")):
        raise IPError(f'network address parse error during conversion from string: '
                      f'netip.ParsePrefix("{text}"): bad bits after slash: "{bits}"')
    parse_ip(addr)
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        raise IPError(f'network address parse error during conversion from string: '
                      f'netip.ParsePrefix("{text}"): prefix length out of range') from exc


def is_cidr(text: str) -> bool:
    try:
        parse_cidr(text)
    except IPError:
        return False
    return True


def contains_ip(cidr: Interface, addr: Address) -> bool:
    return addr.version == cidr.version and addr in cidr.network


def contains_cidr(cidr: Interface, other: Interface) -> bool:
    return (other.version == cidr.version and other.network.prefixlen >= cidr.network.prefixlen
            and other.network.network_address in cidr.network)


def masked(cidr: Interface) -> str:
    return str(cidr.network)


# -- what CEL sees

def _ip(text: str) -> Any:
    return types.IP(value=str(parse_ip(text)))


def _a(ip: Any) -> Address:
    return ipaddress.ip_address(ip.value)


def _cidr(text: str) -> Any:
    parse_cidr(text)
    return types.CIDR(value=str(ipaddress.ip_interface(text)))


def _c(cidr: Any) -> Interface:
    return ipaddress.ip_interface(cidr.value)


def _is_canonical(text: str) -> bool:
    return is_canonical(text)


IP, CIDR = "net.IP", "net.CIDR"
FUNCTIONS: tuple[Function, ...] = (
    global_("ip", "string_to_ip", ("string",), IP, _ip),
    global_("isIP", "is_ip", ("string",), "bool", is_ip),
    global_("ip.isCanonical", "ip_is_canonical", ("string",), "bool", _is_canonical),
    member("family", "ip_family", (IP,), "int", lambda ip: family(_a(ip))),
    member("isUnspecified", "ip_is_unspecified", (IP,), "bool", lambda ip: _a(ip).is_unspecified),
    member("isLoopback", "ip_is_loopback", (IP,), "bool", lambda ip: _a(ip).is_loopback),
    member("isLinkLocalMulticast", "ip_is_link_local_multicast", (IP,), "bool",
           lambda ip: is_link_local_multicast(_a(ip))),
    member("isLinkLocalUnicast", "ip_is_link_local_unicast", (IP,), "bool",
           lambda ip: _a(ip).is_link_local),
    member("isGlobalUnicast", "ip_is_global_unicast", (IP,), "bool",
           lambda ip: is_global_unicast(_a(ip))),
    Function("string", (
        Overload("ip_to_string", (IP,), "string", lambda ip: ip.value),
        Overload("cidr_to_string", (CIDR,), "string", lambda c: c.value),
    )),
    global_("cidr", "string_to_cidr", ("string",), CIDR, _cidr),
    global_("isCIDR", "is_cidr", ("string",), "bool", is_cidr),
    Function("containsIP", (
        Overload("cidr_contains_ip_string", (CIDR, "string"), "bool",
                 lambda c, s: contains_ip(_c(c), parse_ip(s)), True),
        Overload("cidr_contains_ip_ip", (CIDR, IP), "bool",
                 lambda c, ip: contains_ip(_c(c), _a(ip)), True),
    )),
    Function("containsCIDR", (
        Overload("cidr_contains_cidr_string", (CIDR, "string"), "bool",
                 lambda c, s: contains_cidr(_c(c), parse_cidr(s)), True),
        Overload("cidr_contains_cidr", (CIDR, CIDR), "bool",
                 lambda c, o: contains_cidr(_c(c), _c(o)), True),
    )),
    member("ip", "cidr_ip", (CIDR,), IP, lambda c: types.IP(value=str(_c(c).ip))),
    member("masked", "cidr_masked", (CIDR,), CIDR, lambda c: types.CIDR(value=masked(_c(c)))),
    member("prefixLength", "cidr_prefix_length", (CIDR,), "int",
           lambda c: _c(c).network.prefixlen),
)
