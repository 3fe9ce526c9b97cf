"""HTTP basic auth against a bcrypt hash from the config (no plaintext secret anywhere).

bcrypt is slow on purpose (~0.2 s at cost 12), too slow for every scrape: a credential that
verified once is remembered, as a SHA-256 digest of user and password, so later scrapes with
it cost a hash lookup. Failures are never remembered, so guessing stays slow.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading

import bcrypt

REMEMBERED = 16  # distinct good credentials kept (Prometheus servers scraping this agent)


class BasicAuth:
    def __init__(self, username: str, password_hash: str):
        self.username = username.encode()
        self.password_hash = password_hash.encode()
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, authorization: str | None) -> bool:
        """True if the Authorization header carries the configured user and password."""
        credentials = _parse(authorization)
        if credentials is None:
            return False
        user, password = credentials
        digest = hashlib.sha256(user + b"\0" + password).digest()
        with self._lock:
            if digest in self._good:
                return True
        if not hmac.compare_digest(user, self.username):
            return False
        try:
            ok = bcrypt.checkpw(password, self.password_hash)
        except ValueError:  # a malformed hash; load.py checks the format, so this is defensive
            return False
        if ok:
            with self._lock:
                if len(self._good) >= REMEMBERED:
                    self._good.clear()
                self._good.add(digest)
        return ok


def _parse(authorization: str | None) -> tuple[bytes, bytes] | None:
    """
    >>> _parse("Basic " + base64.b64encode(b"prometheus:s3cret:x").decode())
    (b'prometheus', b's3cret:x')
    >>> _parse("Bearer abc") is None, _parse("Basic !!!") is None, _parse(None) is None
    (True, True, True)
    """
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
