"""HS256 JSON Web Tokens (PyJWT) for the `x-trigger-jwt` header of trigger responses.

Each environment signs with its own secret derived from SECRET_KEY, so a token of one
environment never verifies in another and no secret has to be stored.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt as pyjwt
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
    return pyjwt.encode(claims, secret, algorithm="HS256")


def verify(token: str, secret: bytes) -> dict[str, Any]:
    """The claims of a valid, unexpired HS256 token issued for the reference's audience. Raises JwtError."""
    try:
        claims: dict[str, Any] = pyjwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER, options={"require": ["exp"]}
        )
    except pyjwt.ExpiredSignatureError as exc:
        raise JwtError("token expired") from exc
    except pyjwt.InvalidSignatureError as exc:
        raise JwtError("bad signature") from exc
    except pyjwt.InvalidTokenError as exc:
        raise JwtError(f"invalid token: {exc}") from exc
    return claims
