"""Where a rest-hook may point: the server must not become a way into the hospital network.

An endpoint is ``https://`` to a public address. Plain ``http://`` and loopback, private,
link-local, multicast, reserved or otherwise non-global addresses are refused unless the host is
listed in ``FHIR_SUBSCRIPTION_ALLOWED_HOSTS`` (host names, IP addresses or CIDR networks,
optionally with ``:port``; comma-separated). The name is resolved when the Subscription is
written and again before every delivery, and the delivery connects to the very address that was
checked (``pinned``), so a name that first resolves to a public address and then to
169.254.169.254 (DNS rebinding) is refused at delivery. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fhir_server.errors import FhirError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EndpointRefused(FhirError):
    def __init__(self, reason: str) -> None:
        super().__init__(422, "business-rule", reason, "Subscription.channel.endpoint")
        self.reason = reason


@dataclass(slots=True, frozen=True)
class Endpoint:
    url: str
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int


@dataclass(slots=True, frozen=True)
class Pinned:
    """An endpoint and the checked address to connect to."""

    endpoint: Endpoint
    address: str


def public(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


class EndpointPolicy:
    def __init__(self, allowed: str = "", dns_timeout: float = 2.0) -> None:
        # how names are resolved: the system resolver; replaceable (a test plays a DNS server
        # whose answer changes between the subscription and the delivery)
        self.resolver: Callable[[str, int], Awaitable[list[str]]] = _system_resolver
        self.names: set[tuple[str, int | None]] = set()
        self.networks: list[tuple[Network, int | None]] = []
        self.dns_timeout = dns_timeout
        for raw in (allowed or "").split(","):
            item = raw.strip().lower()
            if not item:
                continue
            host, port = _split_port(item)
            try:
                self.networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self.names.add((host, port))

    def _allowed_name(self, host: str, port: int) -> bool:
        return (host, None) in self.names or (host, port) in self.names

    def _allowed_address(self, address: IPAddress, port: int) -> bool:
        return any(
            address in network and (allowed_port is None or allowed_port == port)
            for network, allowed_port in self.networks
        )

    def parse(self, url: object) -> Endpoint:
        """The endpoint of a rest-hook, checked without resolving its name."""
        if not isinstance(url, str) or not url.strip():
            raise EndpointRefused("a rest-hook subscription needs channel.endpoint (a URL)")
        if any(c in url for c in "\r\n\t "):
            raise EndpointRefused("the endpoint URL contains white space")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EndpointRefused(f"the endpoint is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if scheme not in ("http", "https") or not host:
            raise EndpointRefused("the endpoint must be an https:// URL")
        if parts.username is not None or parts.password is not None:
            raise EndpointRefused("the endpoint must not carry credentials; use channel.header")
        port = port or (443 if scheme == "https" else 80)
        endpoint = Endpoint(url, scheme, host, port)
        literal = _literal(host)
        listed = self._allowed_name(host, port) or (
            literal is not None and self._allowed_address(literal, port)
        )
        if scheme == "http" and not listed:
            raise EndpointRefused(
                "the endpoint must be https:// (plain http only to hosts the server's "
                "configuration allows, FHIR_SUBSCRIPTION_ALLOWED_HOSTS)"
            )
        if literal is not None and not public(literal) and not listed:
            raise EndpointRefused(_private(host))
        if (host == "localhost" or host.endswith(".localhost")) and not listed:
            raise EndpointRefused(_private(host))
        return endpoint

    async def pin(self, endpoint: Endpoint) -> Pinned:
        """Resolve the endpoint and return an address it may be reached at; refused when any
        address of the name is not public (unless the host is allowed)."""
        literal = _literal(endpoint.host)
        name_allowed = self._allowed_name(endpoint.host, endpoint.port)
        if literal is not None:
            if not (
                public(literal) or name_allowed or self._allowed_address(literal, endpoint.port)
            ):
                raise EndpointRefused(_private(endpoint.host))
            return Pinned(endpoint, str(literal))
        try:
            async with asyncio.timeout(self.dns_timeout):
                found = await self.resolver(endpoint.host, endpoint.port)
        except (OSError, TimeoutError) as exc:
            raise EndpointRefused(
                f"the endpoint's host {endpoint.host} cannot be resolved ({type(exc).__name__})"
            ) from None
        addresses = []
        for text in found:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses:
            raise EndpointRefused(f"the endpoint's host {endpoint.host} has no address")
        for address in addresses:
            if public(address) or name_allowed or self._allowed_address(address, endpoint.port):
                continue
            raise EndpointRefused(_private(endpoint.host))
        return Pinned(endpoint, str(addresses[0]))


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _private(host: str) -> str:
    return (
        f"the endpoint {host} is (or resolves to) a loopback, private, link-local, multicast or "
        "reserved address; notifications go to public https endpoints only (or to hosts the "
        "server's configuration allows, FHIR_SUBSCRIPTION_ALLOWED_HOSTS)"
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # forms getaddrinfo would accept as an address: 2130706433, 0x7f000001, 127.1
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    return ipaddress.IPv4Address(packed)


def _split_port(item: str) -> tuple[str, int | None]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        if port.isdigit():
            return host, int(port)
    return item, None
