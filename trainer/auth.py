"""CVAT's webhook signature (people and services use the bearer token of cals.http_service)."""
from __future__ import annotations

import hashlib
import hmac


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip())

