"""Secret keys: random, shown once, stored only as a sha256 hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Compared against when the user does not exist, so an unknown name costs the same as a wrong key.
_DUMMY_HASH = hashlib.sha256(b"imagecloud-no-such-user").hexdigest()


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_matches(key: str, stored_hash: str | None) -> bool:
    candidate = hash_key(key)
    return hmac.compare_digest(candidate, stored_hash or _DUMMY_HASH) and stored_hash is not None
