"""The dataset store: one compact gzip'ed JSON record per material in a folder (append-only).

The project's own dataset lives in ``dataset/records/`` of the repository (seed records of
``gpaw-pbe-v1`` plus everything the campaign adds). Records are validated on write and on read; a corrupt,
truncated or NaN-holding file is reported by name and skipped, never overwritten.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.records import RecordError, read_record, record_path, record_spectra, write_record
from ..spectra import MODEL_GRID, interpolate
from .splits import split_of

log = logging.getLogger(__name__)


def default_root() -> Path:
    """``$OPTILADDER_DATASET`` or the repository's ``dataset/records`` (or ``./dataset/records``)."""
    env = os.environ.get("OPTILADDER_DATASET")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3] / "dataset" / "records"
    return repo if repo.is_dir() else Path.cwd() / "dataset" / "records"


@dataclass
class Store:
    """A folder of records, ``<mat_id>.json.gz`` each."""

    root: Path = field(default_factory=default_root)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def paths(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.json.gz") if not p.name.startswith("."))

    def ids(self) -> list[str]:
        return [p.name.removesuffix(".json.gz") for p in self.paths()]

    def __contains__(self, mat_id: str) -> bool:
        return record_path(self.root, mat_id).exists()

    def __len__(self) -> int:
        return len(self.paths())

    def get(self, mat_id: str) -> dict:
        return read_record(record_path(self.root, mat_id))

    def iter_records(self, ids: Iterable[str] | None = None) -> Iterator[dict]:
        """Valid records (sorted by id); invalid files are logged as ``file: problem``, kept in ``errors``, skipped."""
        paths = self.paths() if ids is None else [record_path(self.root, i) for i in ids]
        for p in paths:
            try:
                rec = read_record(p)
            except RecordError as exc:
                self.errors.append(str(exc))
                log.warning("%s", exc)
                continue
            if rec["mat_id"] != p.name.removesuffix(".json.gz"):
                msg = f"{p}: holds material {rec['mat_id']}, not the one its name says"
                self.errors.append(msg)
                log.warning("%s", msg)
                continue
            yield rec

    def add(self, rec: dict, *, allow_test: bool = False) -> Path:
        """Validate and write a record atomically; never replaces an existing record."""
        if not allow_test and rec["protocol"].get("name") == "test":
            raise RecordError(rec["mat_id"], "records of the 'test' protocol do not belong in the dataset")
        return write_record(rec, record_path(self.root, rec["mat_id"]))

    def table(self, ids: Iterable[str] | None = None, grid: np.ndarray = MODEL_GRID) -> DatasetArrays:
        """Trace Im ε of IPA and RPA on ``grid`` for every valid record, with metadata."""
        rows = []
        for rec in self.iter_records(ids):
            sp = record_spectra(rec)
            rows.append(
                (
                    rec["mat_id"],
                    rec.get("split") or split_of(rec["mat_id"]),
                    int(rec["nsites"]),
                    rec["formula"],
                    interpolate(sp["ipa"].omega, sp["ipa"].trace_im(), grid),
                    interpolate(sp["rpa"].omega, sp["rpa"].trace_im(), grid),
                    rec["structure"],
                )
            )
        if not rows:
            empty = np.zeros((0, grid.size))
            return DatasetArrays([], np.array([], str), np.array([], int), [], empty, empty, [], grid)
        ids_, splits, nsites, formulas, ipa, rpa, structs = zip(*rows, strict=True)
        return DatasetArrays(
            list(ids_),
            np.array(splits),
            np.array(nsites),
            list(formulas),
            np.stack(ipa),
            np.stack(rpa),
            list(structs),
            grid,
        )


@dataclass
class DatasetArrays:
    """Model-grid arrays of a set of records. ``ipa``/``rpa``: ``[n_materials, n_grid]`` trace Im ε."""

    ids: list[str]
    splits: np.ndarray
    nsites: np.ndarray
    formulas: list[str]
    ipa: np.ndarray
    rpa: np.ndarray
    structures: list[dict]
    grid: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask) -> DatasetArrays:
        idx = np.flatnonzero(np.asarray(mask))
        return DatasetArrays(
            [self.ids[i] for i in idx],
            self.splits[idx],
            self.nsites[idx],
            [self.formulas[i] for i in idx],
            self.ipa[idx],
            self.rpa[idx],
            [self.structures[i] for i in idx],
            self.grid,
        )

    def split(self, *names: str) -> DatasetArrays:
        return self.subset(np.isin(self.splits, names))
