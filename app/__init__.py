"""The worker's entry point: ``faust -A app worker`` reads this package's ``app``.

The settings are read here, once, from the environment, and passed down;
the App and everything it runs are built by :func:`app.application.create_app`.
"""

from __future__ import annotations

from app.application import create_app
from core.settings import get_settings

__all__ = ["app"]

app = create_app(get_settings())
