"""Command-line interface: one module per verb; each only maps options to a library call.

Heavy libraries (GPAW, torch, dask, fastapi) are imported inside the commands, so ``optiladder --help`` is instant.
"""

from __future__ import annotations

import logging

from . import compute as _compute  # noqa: F401  (registers its commands)
from ._app import app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


__all__ = ["app", "main"]
