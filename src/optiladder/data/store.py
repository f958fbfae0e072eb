"""The dataset store: one compact gzip'ed JSON record per material in a folder (append-only).

The project's own dataset lives in ``dataset/records/`` of the repository (seed records of
``gpaw-pbe-v1`` plus everything the campaign adds). Records are validated on write and on read; a corrupt,
truncated or NaN-holding file is reported by name and skipped, never overwritten.

Besides reading (:meth:`Store.iter_records`, :meth:`Store.table`), the store imports record folders
(:meth:`Store.import_dir`, idempotent) and describes itself (:meth:`Store.index`: the searchable scalars of each
record, the same rows the campaign database indexes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.records import (
    RecordError,
    parse_record_bytes,
    read_record,
    record_path,
    record_spectra,
    validate_record,
    write_bytes_atomic,
    write_record,
)
from ..spectra import MODEL_GRID, interpolate
from .splits import split_of

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def alexandria_ids() -> frozenset[str]:
    """Ids of the bundled Alexandria structure list and of the published split lists."""
    from ..structures import alexandria
    from .splits import split_ids

    return frozenset(e["mat_id"] for e in alexandria()).union(*split_ids().values())


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
    #: ids a record may have; ``None``: the bundled Alexandria ids for the project's dataset folder, any id
    #: for another folder (a user's own campaign)
    known_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.known_ids is None and self.root.resolve() == default_root().resolve():
            self.known_ids = alexandria_ids()

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
        return read_record(record_path(self.root, mat_id), self.known_ids)

    def iter_records(self, ids: Iterable[str] | None = None) -> Iterator[dict]:
        """Valid records (sorted by id); invalid files are logged as ``file: problem``, kept in ``errors``, skipped."""
        paths = self.paths() if ids is None else [record_path(self.root, i) for i in ids]
        for p in paths:
            try:
                rec = read_record(p, self.known_ids)
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

    def index(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One row of searchable scalars per valid record (see :func:`record_index`); invalid files skipped."""
        rows = []
        for rec in self.iter_records(ids):
            rows.append(record_index(rec, record_path(self.root, rec["mat_id"])))
        return rows

    def verify(self) -> tuple[int, list[str]]:
        """(number of valid records, ``file: problem`` for every invalid one)."""
        self.errors = []
        n = sum(1 for _ in self.iter_records())
        return n, list(self.errors)

    def import_dir(self, source: str | Path, *, allow_test: bool = False) -> ImportReport:
        """Import every record file (``*.json.gz``, ``*.json``) of a folder; idempotent.

        A valid record whose material is not in the store yet is written atomically (a ``.json.gz`` keeps its
        exact bytes); one that is there already with the same content counts as ``present``; one that is there
        with different content is a ``conflict`` and left alone (records are append-only); invalid files are
        reported by name and skipped. ``test``-protocol records are refused unless ``allow_test``.
        """
        src = Path(source)
        if not src.is_dir():
            raise RecordError(src, "not a folder")
        report = ImportReport()
        files = sorted(
            p
            for p in src.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name.endswith((".json.gz", ".json"))
        )
        for p in files:
            try:
                rec = read_record(p)
                if not allow_test and rec["protocol"].get("name") == "test":
                    raise RecordError(p, "a 'test'-protocol record does not belong in the dataset")
            except RecordError as exc:
                report.invalid.append(str(exc))
                log.warning("%s", exc)
                continue
            target = record_path(self.root, rec["mat_id"])
            if target.exists():
                try:
                    same = _canonical(read_record(target)) == _canonical(rec)
                except RecordError as exc:
                    report.invalid.append(str(exc))
                    log.warning("%s", exc)
                    continue
                (report.present if same else report.conflicts).append(rec["mat_id"])
                if not same:
                    log.warning("%s: differs from the stored %s; left alone (append-only)", p, target)
                continue
            try:
                if p.name.endswith(".json.gz"):
                    _write_bytes_once(p.read_bytes(), target)
                else:
                    write_record(rec, target)
            except RecordError as exc:  # written meanwhile by someone else
                report.conflicts.append(rec["mat_id"])
                log.warning("%s", exc)
                continue
            report.imported.append(rec["mat_id"])
        return report

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


@dataclass
class ImportReport:
    """What :meth:`Store.import_dir` did: material ids per outcome, and ``file: problem`` per invalid file."""

    imported: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{len(self.imported)} imported, {len(self.present)} already present, "
            f"{len(self.conflicts)} conflicting (left alone), {len(self.invalid)} invalid (skipped)"
        )


def record_index(rec: dict, path: str | Path, data: bytes | None = None) -> dict[str, Any]:
    """The searchable scalars of a stored record: the campaign database's ``records`` row.

    Keys: mat_id, split, nsites, formula, spacegroup, gap (indirect, eV), gap_direct (eV), seconds (sum of the
    calculation phases, s), protocol (name), path (absolute), sha256 (of the file's bytes).
    """
    path = Path(path)
    data = path.read_bytes() if data is None else data
    secs = rec.get("seconds") or {}
    return {
        "mat_id": rec["mat_id"],
        "split": rec.get("split") or split_of(rec["mat_id"]),
        "nsites": int(rec["nsites"]),
        "formula": rec.get("formula"),
        "spacegroup": rec.get("spacegroup"),
        "gap": rec.get("gap_indirect"),
        "gap_direct": rec.get("gap_direct"),
        "seconds": round(float(sum(secs.values())), 3) if isinstance(secs, dict) else None,
        "protocol": (rec.get("protocol") or {}).get("name"),
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _canonical(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def _write_bytes_once(data: bytes, path: Path) -> None:
    """Write validated gzip'ed record bytes atomically to a new file (``os.link``: never replaces one)."""
    validate_record(parse_record_bytes(data, str(path)), str(path))
    write_bytes_atomic(data, path)
