"""optiladder: climb the Jacob's ladder of optical spectra of crystals (IPA → RPA), from GPAW to graph networks."""

from __future__ import annotations

__version__ = "0.1.0"
