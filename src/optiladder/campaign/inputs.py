"""Campaign inputs: the structure list turned into queue rows (smallest cells first), and duration parsing."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .queue import NewJob

log = logging.getLogger(__name__)

#: file name endings read as structures when a directory is given
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz", ".json", ".json.gz", ".traj")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|m|min|s|sec)?", re.IGNORECASE)
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "sec": 1.0, None: 1.0}


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from ``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"1.5h"`` or a plain number (seconds)."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{text}: not a duration (examples: 2h, 90m, 1h30m, 45s, 3600)")
    return total


def lattice_volume(structure: dict) -> float:
    """Cell volume (Å³) of a pymatgen structure dict."""
    return float(abs(np.linalg.det(np.asarray(structure["lattice"]["matrix"], float))))


def alexandria_jobs() -> list[NewJob]:
    """The bundled Alexandria list (3,538 materials, all splits) as jobs; source = the Alexandria id."""
    from ..structures import alexandria

    return [
        NewJob(
            id=e["mat_id"],
            source=e["mat_id"],
            nsites=int(e["nsites"]),
            volume=round(lattice_volume(e["structure"]), 4),
            split=e["split"],
            formula=e["formula"],
        )
        for e in alexandria()
    ]


def _mat_id(path: Path) -> str:
    base = path.name
    for suffix in (".gz", ".json", ".cif", ".vasp", ".xyz", ".extxyz", ".poscar", ".traj"):
        base = base.removesuffix(suffix)
    return base


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given; directories as the structure files directly inside them (sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.iterdir()
                    if f.is_file()
                    and not f.name.startswith(".")
                    and (f.name.lower().endswith(STRUCTURE_SUFFIXES) or "poscar" in f.name.lower())
                )
            )
        else:
            out.append(p)
    return out


def file_jobs(items: Iterable[str | Path]) -> tuple[list[NewJob], list[tuple[NewJob, str]]]:
    """Jobs for structure files (id = file name without its suffixes); returns (jobs, [(bad input, reason)])."""
    from ..data.splits import split_of
    from ..structures import StructureError, check_geometry, from_any

    jobs: list[NewJob] = []
    bad: list[tuple[NewJob, str]] = []
    seen: dict[str, Path] = {}
    for path in expand_inputs(items):
        mat_id = _mat_id(path)
        if mat_id in seen:
            raise ValueError(f"{path}: same material id {mat_id!r} as {seen[mat_id]}")
        seen[mat_id] = path
        try:
            with warnings.catch_warnings():  # pymatgen warns about noble gases' electronegativity etc.
                warnings.simplefilter("ignore")
                s = check_geometry(from_any(path), str(path))  # bounded geometry before it is queued
                formula = s.composition.reduced_formula
        except StructureError as exc:
            bad.append((NewJob(mat_id, str(path.resolve()), nsites=0, split=split_of(mat_id)), str(exc)))
            continue
        jobs.append(
            NewJob(
                id=mat_id,
                source=str(path.resolve()),
                nsites=len(s),
                volume=round(float(s.lattice.volume), 4),
                split=split_of(mat_id),
                formula=formula,
            )
        )
    return jobs, bad
