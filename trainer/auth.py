"""Who may talk to the trainer: CVAT by webhook signature, people and services by bearer token."""
from __future__ import annotations

import hashlib
import hmac


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip())


def valid_bearer(token: str, header: str | None) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
