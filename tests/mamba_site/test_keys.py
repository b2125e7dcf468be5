import hmac

import pytest

from mamba_site import keys


def test_key_generate_is_mamba_prefix_and_enough_randomness():
    secret = keys.key_generate()
    assert secret.startswith("mamba_")
    assert len(secret) - len("mamba_") >= 32
    assert secret != keys.key_generate()
    assert keys.key_lookup_prefix(secret) == secret[:14]


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "mamba_",
        "mamba_short",
        "sk-" + "a" * 40,
        "mamba_" + "a" * 200,
        "mamba_" + "é" * 40,
        "mamba_" + "a" * 30 + " x",
        "MAMBA_" + "a" * 40,
    ],
)
def test_key_lookup_prefix_rejects_malformed(secret):
    assert keys.key_lookup_prefix(secret) is None


def test_key_digest_is_sha256_hex_and_never_the_secret():
    secret = keys.key_generate()
    digest = keys.key_digest(secret)
    assert len(digest) == 64
    assert secret not in digest
    assert keys.key_matches(secret, digest)
    assert not keys.key_matches(secret + "x", digest)


def test_key_matches_compares_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(keys.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    keys.key_matches("mamba_x", "0" * 64)
    assert calls == [1]
