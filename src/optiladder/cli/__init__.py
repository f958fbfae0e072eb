"""Command-line interface: one module per verb; each only maps options to a library call.

Heavy libraries (GPAW, torch, dask, fastapi) are imported inside the commands, so ``optiladder --help`` is instant.
"""

from __future__ import annotations

import logging

from . import campaign as _campaign  # noqa: F401  (optiladder campaign run|status)
from . import compute as _compute  # noqa: F401  (registers its commands)
from . import dataset as _dataset  # noqa: F401  (optiladder dataset import|stats|export)
from . import plan as _plan  # noqa: F401  (optiladder plan --budget H)
from . import predict as _predict  # noqa: F401  (optiladder predict)
from . import pretrained as _pretrained  # noqa: F401  (optiladder pretrained list|rebuild|map)
from . import serve as _serve  # noqa: F401  (optiladder serve)
from . import study as _study  # noqa: F401  (optiladder study paper)
from . import tune as _tune  # noqa: F401  (optiladder tune)
from . import wavefunction as _wavefunction  # noqa: F401  (optiladder wavefunction ...)
from ._app import app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


__all__ = ["app", "main"]
