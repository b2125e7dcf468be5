"""API key secrets: generation, look-up prefix, SHA-256 digest and constant-time checks."""

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "mamba_"
# 32 random bytes: 43 URL-safe characters after the prefix.
RANDOM_BYTES = 32
LOOKUP_CHARS = 8
MIN_LENGTH = len(KEY_PREFIX) + 32
MAX_LENGTH = 128
_SHAPE = re.compile(r"^mamba_[A-Za-z0-9_-]+$")


def key_generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def key_lookup_prefix(secret: str) -> str | None:
    """The stored look-up prefix of a well-formed key, or None for anything malformed."""
    if not (MIN_LENGTH <= len(secret) <= MAX_LENGTH) or not _SHAPE.match(secret):
        return None
    return secret[: len(KEY_PREFIX) + LOOKUP_CHARS]


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_matches(secret: str, digest: str) -> bool:
    """Constant-time comparison of the secret's digest with a stored digest."""
    return hmac.compare_digest(key_digest(secret).encode(), digest.encode())
