"""riskstream's Faust application package.

``faust -A app worker`` imports this package and reads its ``app``
attribute. The App is built lazily (PEP 562) so that the settings and the
CLI, which also live here, can be imported by the model server and the
generator without importing Faust and registering agents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import faust

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from app.application import app

        return app
    raise AttributeError(f"module 'app' has no attribute {name!r}")


app: faust.App
