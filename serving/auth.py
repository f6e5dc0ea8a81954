"""The ``X-Auth-Token`` check of the model endpoints (the reference's header).

The comparison takes the same time whatever the first wrong character, so
the token cannot be guessed byte by byte from response times. The token
lives in a ``SecretStr`` until the comparison and is never logged.

``RISKSTREAM_MODEL_TOKEN`` may list several comma-separated tokens, each
accepted: during a rotation the servers hold ``new,old`` while the
clients (which send the first token of their own setting) move over.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from models.protocol import TOKEN_HEADER
from serving.errors import Unauthorized

__all__ = ["TOKEN_HEADER", "TokenCheck"]


class TokenCheck:
    """Accepts a request if no token is configured, or if it carries one of the configured tokens."""

    def __init__(self, token: SecretStr) -> None:
        self._expected = [
            part.strip().encode("utf-8")
            for part in token.get_secret_value().split(",")
            if part.strip()
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._expected)

    def verify(self, presented: str | None) -> None:
        """Raise :class:`Unauthorized` unless ``presented`` is one of the configured tokens."""
        if not self._expected:
            return
        if presented is None:
            raise Unauthorized(f"missing {TOKEN_HEADER} header")
        candidate = presented.encode("utf-8", "surrogateescape")
        # Every token is compared, so the time taken does not tell which one matched.
        matches = [hmac.compare_digest(candidate, token) for token in self._expected]
        if not any(matches):
            raise Unauthorized(f"wrong {TOKEN_HEADER}")
