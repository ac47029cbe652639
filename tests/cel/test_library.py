"""The Kubernetes library logic on its own: kube's parsing rules for quantities, URLs, IPs
and CIDRs, where Python's parsers would differ from Go's."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kext.cel.library import ip, quantity, urls


@pytest.mark.parametrize(("text", "value"), [
    ("1", Fraction(1)), ("1.5Gi", Fraction(3 * 2 ** 29)), ("100m", Fraction(1, 10)),
    ("1e3", Fraction(1000)), ("-2k", Fraction(-2000)), ("+.5", Fraction(1, 2)),
    ("1n", Fraction(1, 10 ** 9)),
    ("0.1n", Fraction(1, 10 ** 9)),  # finer than a nano: rounded up, as ParseQuantity does
])
def test_quantities_parse_exactly(text: str, value: Fraction) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "Mi", "1,5", "1.5.5", "1 G", "1KB", "200K", "."])
def test_quantities_kube_refuses(text: str) -> None:
    assert not quantity.is_quantity(text)


def test_quantity_integers_are_int64() -> None:
    assert quantity.as_integer(quantity.parse("8Ei") - 1) == 2 ** 63 - 1
    assert not quantity.is_integer(quantity.parse("8Ei"))
    assert not quantity.is_integer(quantity.parse("1.5"))


@pytest.mark.parametrize(("text", "ok"), [
    ("https://example.com", True), ("/a/b", True), ("mailto:a@b.c", True),
    ("example.com", False), ("//host/path", True), ("https://h:80x/", False),
    ("https://h/%zz", False), ("https://[::1/", False),
])
def test_urls_are_request_uris(text: str, ok: bool) -> None:
    assert urls.is_url(text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("10.0.0.1", True), ("fe80::1", True), ("010.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False), ("1.2.3", False),
])
def test_ips_are_read_as_netip_reads_them(text: str, ok: bool) -> None:
    assert ip.is_ip(text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("10.0.0.0/8", True), ("10.0.0.1/8", True), ("2001:db8::/32", True),
    ("10.0.0.0/33", False), ("10.0.0.0/08", False), ("10.0.0.0", False),
])
def test_cidrs_are_read_as_netip_reads_them(text: str, ok: bool) -> None:
    assert ip.is_cidr(text) is ok
