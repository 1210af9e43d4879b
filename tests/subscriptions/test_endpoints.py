"""Where a rest-hook may point (fhir_server/subscriptions/endpoints.py): the server must not
become a way into the hospital network."""

from __future__ import annotations

import pytest

from fhir_server.subscriptions.endpoints import EndpointPolicy, EndpointRefused

REFUSED = [
    "http://127.0.0.1/hook",
    "https://127.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://10.0.0.7/hook",
    "https://192.168.1.1/hook",
    "https://172.16.5.4/hook",
    "https://100.64.0.1/hook",  # shared address space
    "https://[::1]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "https://224.0.0.1/hook",  # multicast
    "https://0.0.0.0/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one number
    "https://0x7f000001/hook",
    "https://127.1/hook",
    "https://localhost/hook",
    "https://api.localhost/hook",
    "http://hooks.example.org/hook",  # plain http to a public host
    "ftp://hooks.example.org/hook",
    "https://user:secret@hooks.example.org/hook",
    "https:///hook",
    "not a url",
    "",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_endpoints(url: str) -> None:
    with pytest.raises(EndpointRefused):
        EndpointPolicy().parse(url)


def test_public_https_is_fine_and_the_allow_list_opens_named_hosts() -> None:
    policy = EndpointPolicy()
    assert policy.parse("https://hooks.example.org/bib?x=1").host == "hooks.example.org"
    assert policy.parse("https://93.184.215.14:8443/h").port == 8443  # a literal address
    allowed = EndpointPolicy("127.0.0.1, receiver.local:8080, 10.1.0.0/16")
    assert allowed.parse("http://127.0.0.1:9999/hook").host == "127.0.0.1"
    assert allowed.parse("http://receiver.local:8080/h").port == 8080
    with pytest.raises(EndpointRefused):
        allowed.parse("http://receiver.local:8081/h")  # only that port
    assert allowed.parse("https://10.1.2.3/h").host == "10.1.2.3"
    with pytest.raises(EndpointRefused):
        allowed.parse("https://10.2.0.1/h")


async def test_names_are_resolved_and_every_address_must_be_public() -> None:
    policy = EndpointPolicy()
    answers = {"hooks.example.org": ["93.184.215.14"], "intranet.example.org": ["10.0.0.7"]}

    async def dns(host: str, port: int) -> list[str]:
        return answers[host]

    policy.resolver = dns
    pinned = await policy.pin(policy.parse("https://hooks.example.org/h"))
    assert pinned.address == "93.184.215.14"
    with pytest.raises(EndpointRefused, match="private"):
        await policy.pin(policy.parse("https://intranet.example.org/h"))
    # a name with one public and one private address is refused too
    answers["hooks.example.org"] = ["93.184.215.14", "169.254.169.254"]
    with pytest.raises(EndpointRefused):
        await policy.pin(policy.parse("https://hooks.example.org/h"))


async def test_dns_rebinding_is_caught_at_delivery() -> None:
    """The name is resolved again before each delivery, and the delivery connects to the very
    address that was checked: a name that now resolves to the metadata service is refused."""
    policy = EndpointPolicy()
    answer = ["93.184.215.14"]

    async def dns(host: str, port: int) -> list[str]:
        return list(answer)

    policy.resolver = dns
    endpoint = policy.parse("https://rebind.example.org/h")
    assert (await policy.pin(endpoint)).address == "93.184.215.14"
    answer[:] = ["169.254.169.254"]
    with pytest.raises(EndpointRefused):
        await policy.pin(endpoint)


async def test_localhost_resolves_to_loopback_and_is_refused_unless_allowed() -> None:
    policy = EndpointPolicy()
    with pytest.raises(EndpointRefused):
        await policy.pin(policy.parse("https://127.0.0.1/h"))
    open_ = EndpointPolicy("localhost")
    pinned = await open_.pin(open_.parse("http://localhost:8080/h"))
    assert pinned.address in ("127.0.0.1", "::1")
