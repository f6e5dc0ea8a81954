"""The ``X-Auth-Token`` check of the model endpoints (the reference's header).

The comparison takes the same time whatever the first wrong character, so
the token cannot be guessed byte by byte from response times. The token
lives in a ``SecretStr`` until the comparison and is never logged.
"""

from __future__ import annotations

import hmac
import logging

from pydantic import SecretStr

from serving.errors import Unauthorized

__all__ = ["TOKEN_HEADER", "TokenCheck"]

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Auth-Token"


class TokenCheck:
    """Accepts a request if no token is configured, or if it carries exactly that token."""

    def __init__(self, token: SecretStr) -> None:
        self._expected = token.get_secret_value().encode("utf-8")

    @property
    def enabled(self) -> bool:
        return bool(self._expected)

    def verify(self, presented: str | None) -> None:
        """Raise :class:`Unauthorized` unless ``presented`` is the configured token."""
        if not self._expected:
            return
        if presented is None:
            raise Unauthorized(f"missing {TOKEN_HEADER} header")
        if not hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self._expected
        ):
            raise Unauthorized(f"wrong {TOKEN_HEADER}")
