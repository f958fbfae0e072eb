"""optiladder: climb the Jacob's ladder of optical spectra of crystals (IPA → RPA), from GPAW to graph networks."""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"


def cache_dir() -> Path:
    """``$OPTILADDER_CACHE`` or ``$XDG_CACHE_HOME/optiladder`` (default ``~/.cache/optiladder``): the one root of
    every regenerable cache (graphs, foundation embeddings, wavefunction exports); never in git."""
    env = os.environ.get("OPTILADDER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "optiladder"
