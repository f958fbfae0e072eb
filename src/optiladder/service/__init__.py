"""Web service: FastAPI app (``POST /predict``, ``GET /materials/{id}``, ``GET /map``), pages and the map.

``optiladder serve`` runs :func:`optiladder.service.app.create_app` on uvicorn. Importing this package imports
neither FastAPI nor torch; import :mod:`optiladder.service.app` for the app itself.
"""

from __future__ import annotations

from pathlib import Path

#: Static files (pages, script, style, the bundled plotly.min.js).
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The shipped map of the dataset (sc model embeddings, UMAP coordinates); see :mod:`.mapdata`.
DEFAULT_MAP_PATH = STATIC_DIR / "map.json.gz"

__all__ = ["DEFAULT_MAP_PATH", "STATIC_DIR"]
