"""HS256 JSON Web Tokens (stdlib only) for the `x-trigger-jwt` header of trigger responses.

Each environment signs with its own secret derived from SECRET_KEY, so a token of one
environment never verifies in another and no secret has to be stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings

from runs.models import Environment

ISSUER = "https://id.trigger.dev"
AUDIENCE = "https://api.trigger.dev"
LIFETIME = 3600  # seconds, like the reference server's public access tokens


class JwtError(ValueError):
    """A token that is malformed, badly signed or expired."""


def environment_secret(environment: Environment) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), f"runyard-jwt:{environment.slug}".encode(), hashlib.sha256).digest()


def run_token(environment: Environment, run_id: str, now: float | None = None) -> str:
    """The public access token for one run, as the reference server issues it."""
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(environment.pk),
        "pub": True,
        "scopes": [f"read:runs:{run_id}", f"write:inputStreams:{run_id}"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + LIFETIME,
    }
    return sign(claims, environment_secret(environment))


def sign(claims: dict[str, Any], secret: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def verify(token: str, secret: bytes, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid, unexpired HS256 token. Raises JwtError."""
    try:
        header, body, signature = token.split(".")
        algorithm = json.loads(_unb64(header)).get("alg")
        claims = json.loads(_unb64(body))
        given = _unb64(signature)
    except (ValueError, TypeError, AttributeError) as exc:
        raise JwtError("malformed token") from exc
    expected = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    if algorithm != "HS256" or not hmac.compare_digest(expected, given):
        raise JwtError("bad signature")
    if not isinstance(claims, dict):
        raise JwtError("claims are not an object")
    if claims.get("exp", 0) <= (now if now is not None else time.time()):
        raise JwtError("token expired")
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
