import ipaddress

import pytest

from mamba_site.clients import (
    TrustedProxies,
    address_parse,
    client_address,
    client_group,
    trusted_proxies_parse,
)

NONE = TrustedProxies()
ONE_HOP = trusted_proxies_parse("1")
TWO_HOPS = trusted_proxies_parse("2")
CLUSTER = trusted_proxies_parse("10.0.0.0/8, fd00::/8")


def client(remote, forwarded, trusted):
    address = client_address(remote, forwarded, trusted)
    return str(address) if address is not None else None


def test_trusted_proxies_parse_reads_a_hop_count():
    assert trusted_proxies_parse("2") == TrustedProxies(hops=2)


def test_trusted_proxies_parse_reads_networks_and_addresses():
    parsed = trusted_proxies_parse("10.0.0.0/8,192.168.1.7 fd00::/8")
    assert parsed.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("fd00::/8"),
    )


def test_trusted_proxies_parse_empty_trusts_nobody():
    assert not trusted_proxies_parse("  ")


@pytest.mark.parametrize("value", ["ingress", "10.0.0.0/33", "-1", "1.5"])
def test_trusted_proxies_parse_refuses_anything_else(value):
    with pytest.raises(ValueError, match="neither a hop count"):
        trusted_proxies_parse(value)


def test_client_address_ignores_forwarded_for_without_trusted_proxies():
    assert client(remote="203.0.113.9", forwarded="198.51.100.1", trusted=NONE) == "203.0.113.9"


def test_client_address_one_hop_takes_the_entry_the_ingress_appended():
    assert client("10.1.2.3", "203.0.113.9", ONE_HOP) == "203.0.113.9"


def test_client_address_one_hop_ignores_what_the_client_forged():
    assert client("10.1.2.3", "1.1.1.1, 2.2.2.2, 203.0.113.9", ONE_HOP) == "203.0.113.9"


def test_client_address_two_hops_skips_both_proxies():
    # client -> CDN (appends client) -> ingress (appends CDN) -> pod
    assert client("10.1.2.3", "6.6.6.6, 203.0.113.9, 198.51.100.50", TWO_HOPS) == "203.0.113.9"


def test_client_address_hops_without_a_header_is_the_peer():
    assert client("203.0.113.9", None, ONE_HOP) == "203.0.113.9"


def test_client_address_hops_skip_a_malformed_entry_towards_the_proxies():
    assert client("10.1.2.3", "6.6.6.6, garbage, 10.9.9.9", TWO_HOPS) == "10.9.9.9"


def test_client_address_networks_take_the_first_untrusted_from_the_right():
    forwarded = "6.6.6.6, 203.0.113.9, 10.9.9.9"
    assert client("10.1.2.3", forwarded, CLUSTER) == "203.0.113.9"


def test_client_address_networks_ignore_the_header_from_an_untrusted_peer():
    assert client("203.0.113.9", "6.6.6.6", CLUSTER) == "203.0.113.9"


def test_client_address_networks_stop_at_a_malformed_entry():
    assert client("10.1.2.3", "6.6.6.6, unknown", CLUSTER) == "10.1.2.3"


def test_client_address_networks_all_trusted_is_the_leftmost():
    assert client("10.1.2.3", "10.4.4.4, 10.5.5.5", CLUSTER) == "10.4.4.4"


def test_client_address_networks_take_ipv6_proxies():
    assert client("fd00::5", "2001:db8:1:2::7", CLUSTER) == "2001:db8:1:2::7"


def test_client_address_without_a_peer_address_is_unknown():
    assert client("", "203.0.113.9", ONE_HOP) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9:51234", "203.0.113.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("unknown", None),
        ("", None),
        ("[2001:db8::1", None),
    ],
)
def test_address_parse_reads_what_proxies_write(value, expected):
    address = address_parse(value)
    assert (str(address) if address is not None else None) == expected


def test_client_group_is_the_ipv4_address():
    assert client_group(ipaddress.ip_address("203.0.113.9")) == "203.0.113.9"


def test_client_group_puts_an_ipv6_64_together():
    first = client_group(ipaddress.ip_address("2001:db8:1:2:aaaa::1"))
    second = client_group(ipaddress.ip_address("2001:db8:1:2:bbbb::2"))
    other = client_group(ipaddress.ip_address("2001:db8:1:3::1"))
    assert first == second == "2001:db8:1:2::/64"
    assert other != first


def test_client_group_of_no_address_is_one_shared_client():
    assert client_group(None) == "unknown"
