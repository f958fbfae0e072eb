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
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.records import (
    RecordError,
    parse_record_bytes,
    read_record,
    record_levels,
    record_path,
    validate_record,
    write_bytes_atomic,
    write_record,
)
from ..targets import DEFAULT_GRID, LEVELS, TRACE, Grid, record_traces
from .admission import dataset_refusal, exclusion, record_numerics, record_physics
from .splits import held_out as is_held_out
from .splits import split_of

log = logging.getLogger(__name__)

#: subfolder of a store holding one ``<mat_id>.json`` per material the engine refused for good (metallic, open
#: shell): a fresh campaign database learns them from there instead of computing them again
REFUSED_DIR = "refused"


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


def protocol_root(protocol: str) -> Path:
    """The dataset folder of a protocol's records: ``dataset/records`` (:func:`default_root`) for the IPA + RPA
    protocols, its sibling ``dataset/<folder>`` for the others (``dataset/ipa-lite`` for gpaw-pbe-ipa-lite)."""
    from ..engine.protocols import get_protocol

    folder = get_protocol(protocol).folder
    root = default_root()
    return root if folder == "records" else root.parent / folder


def cheap_ipa_root() -> Path:
    """``$OPTILADDER_IPA_LITE`` or the dataset's ``dataset/ipa-lite`` (the cheap IPA rung's records)."""
    from ..engine.protocols import IPA_LITE_PROTOCOL

    env = os.environ.get("OPTILADDER_IPA_LITE")
    return Path(env) if env else protocol_root(IPA_LITE_PROTOCOL)


def cheap_ipa_records(
    root: str | Path | None = None,
    grid: Grid | np.ndarray = DEFAULT_GRID,
    *,
    components: tuple[str, ...] = (TRACE,),
) -> DatasetArrays:
    """All cheap IPA spectra of the pool: the pretraining set of the ladder's lower rung.

    Every valid ``gpaw-pbe-ipa-lite`` record under ``root`` (default :func:`cheap_ipa_root`) of a training or
    unlisted (``none``) material, as :class:`DatasetArrays` with the single level ``ipa``: Im ε (IPA, the trace
    by default) on ``grid``, ``[n_materials, len(components) · n_grid]`` in ``arrays.ipa``, with ids, splits,
    cell sizes, formulas and structures. Excluded materials (:func:`~.admission.exclusion`) and, should one ever
    be there, validation or test materials are left out (logged): never train on them at any level. Records of
    other protocols in the folder are skipped. An absent folder gives an empty table.
    """
    from ..engine.protocols import IPA_LITE_PROTOCOL

    store = Store(Path(root) if root is not None else cheap_ipa_root())
    arrays = store.table(grid=grid, components=components, levels=("ipa",), protocol=IPA_LITE_PROTOCOL)
    held_out = np.array(
        [is_held_out(i, s) is not None for i, s in zip(arrays.ids, arrays.splits, strict=True)], bool
    )
    if held_out.any():
        log.warning(
            "%s: %d validation/test records left out of the cheap IPA set: %s",
            store.root,
            int(held_out.sum()),
            ", ".join(np.asarray(arrays.ids)[held_out][:10]),
        )
    return arrays.subset(~held_out)


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

    # -- refusals: materials the engine refused for good (metallic, open shell), kept so that no later
    # -- campaign, on this machine or a fresh one, pays for them again
    @property
    def refused_root(self) -> Path:
        return self.root / REFUSED_DIR

    def refusals(self) -> dict[str, dict[str, Any]]:
        """Material id → refusal (``mat_id``, ``kind``, ``error``, ``protocol``, ``numerics``, ``date``) of every
        readable ``refused/<mat_id>.json``; unreadable files are reported in :attr:`errors` and skipped."""
        out: dict[str, dict[str, Any]] = {}
        if not self.refused_root.is_dir():
            return out
        for path in sorted(self.refused_root.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                ref = json.loads(path.read_text())
                if ref.get("mat_id") != path.name.removesuffix(".json") or not isinstance(
                    ref.get("error"), str
                ):
                    raise ValueError("not a refusal of the material its name says")
            except (OSError, ValueError) as exc:
                self.errors.append(f"{path}: {exc}")
                continue
            out[ref["mat_id"]] = ref
        return out

    def add_refusal(
        self, mat_id: str, *, kind: str, error: str, protocol: str, numerics: str | None
    ) -> Path | None:
        """Write ``refused/<mat_id>.json`` once (atomic, never replaced); None if the material has a record or a
        refusal already."""
        path = self.refused_root / f"{mat_id}.json"
        if mat_id in self or path.exists():
            return None
        ref = {
            "mat_id": mat_id,
            "kind": kind,
            "error": " ".join(error.split()),
            "protocol": protocol,
            "numerics": numerics,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            return write_bytes_atomic((json.dumps(ref, indent=1, sort_keys=True) + "\n").encode(), path)
        except RecordError:  # written meanwhile by another worker
            return None

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
        reported by name and skipped. Records the dataset rule refuses (:func:`~.admission.dataset_refusal`,
        e.g. the ``test`` protocol) are refused unless ``allow_test``.
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
                why = None if allow_test else dataset_refusal(rec["protocol"])
                if why:
                    raise RecordError(p, why)
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
        """Validate and write a record atomically; never replaces an existing record. Records the dataset rule
        refuses (:func:`~.admission.dataset_refusal`) raise unless ``allow_test``."""
        why = None if allow_test else dataset_refusal(rec["protocol"])
        if why:
            raise RecordError(rec["mat_id"], why)
        return write_record(rec, record_path(self.root, rec["mat_id"]))

    def excluded(self) -> dict[str, str]:
        """Stored materials that are excluded from training and evaluation: id → reason."""
        return {i: why for i in self.ids() if (why := exclusion(i))}

    def table(
        self,
        ids: Iterable[str] | None = None,
        grid: Grid | np.ndarray = DEFAULT_GRID,
        *,
        components: tuple[str, ...] = (TRACE,),
        levels: tuple[str, ...] = LEVELS,
        protocol: str | None = None,
        mix_physics: bool = False,
        include_excluded: bool = False,
    ) -> DatasetArrays:
        """Im ε of every level on ``grid`` (:func:`~optiladder.targets.record_traces`) for every valid record,
        with metadata (split, cell size, formula, structure, protocol and numerics).

        Records of one physics only: ``protocol`` selects one; without it, records of several protocols raise
        :class:`MixedPhysicsError` unless ``mix_physics``. Records that differ only in numerics are pooled.
        Excluded materials (:func:`~.admission.exclusion`) are left out unless ``include_excluded``.
        ``levels``: the rungs to read (default: all of :data:`~optiladder.targets.LEVELS`).
        """
        grid = grid if isinstance(grid, Grid) else Grid.of(grid)
        rows = []
        for rec in self.iter_records(ids):
            if not include_excluded and exclusion(rec["mat_id"]):
                continue
            physics = record_physics(rec)
            if protocol is not None and physics != protocol:
                continue
            missing = [lv for lv in levels if lv not in record_levels(rec)]
            if missing:  # e.g. an IPA-only gpaw-pbe-ipa-lite record asked for RPA
                raise RecordError(
                    record_path(self.root, rec["mat_id"]),
                    f"holds no {'/'.join(missing)} spectra (protocol {physics}); ask for levels={record_levels(rec)}",
                )
            rows.append(
                (
                    rec["mat_id"],
                    rec.get("split") or split_of(rec["mat_id"]),
                    int(rec["nsites"]),
                    rec["formula"],
                    record_traces(rec, grid, levels, components),
                    rec["structure"],
                    physics,
                    record_numerics(rec),
                )
            )
        physics_seen = sorted({r[6] for r in rows})
        if len(physics_seen) > 1 and not mix_physics:
            counts = {p: sum(r[6] == p for r in rows) for p in physics_seen}
            raise MixedPhysicsError(
                self.root,
                f"records of different physics {counts}; choose one with protocol=… (or mix_physics=True)",
            )
        width = grid.n * len(components)
        if not rows:
            empty = {lv: np.zeros((0, width)) for lv in levels}
            e = np.array([], str)
            return DatasetArrays(
                [], e, np.array([], int), [], empty, [], grid.values(), e, e, tuple(components)
            )
        ids_, splits, nsites, formulas, traces, structs, phys, nums = zip(*rows, strict=True)
        return DatasetArrays(
            list(ids_),
            np.array(splits),
            np.array(nsites),
            list(formulas),
            {lv: np.stack([t[lv] for t in traces]) for lv in levels},
            list(structs),
            grid.values(),
            np.array(phys),
            np.array(nums),
            tuple(components),
        )


class MixedPhysicsError(RecordError):
    """A table that would mix records of different physics (protocols)."""


@dataclass
class DatasetArrays:
    """Model-grid arrays of a set of records.

    ``spectra``: level → Im ε ``[n_materials, len(components) · n_grid]`` (the trace by default; also
    reachable as ``arrays.<level>``, e.g. ``arrays.rpa``); ``grid``: ω in eV ``[n_grid]``; ``protocols`` /
    ``numerics``: the physics and the numerics of each record ``[n_materials]``.
    """

    ids: list[str]
    splits: np.ndarray
    nsites: np.ndarray
    formulas: list[str]
    spectra: dict[str, np.ndarray]
    structures: list[dict]
    grid: np.ndarray
    protocols: np.ndarray
    numerics: np.ndarray
    components: tuple[str, ...] = (TRACE,)

    def __len__(self) -> int:
        return len(self.ids)

    def __getattr__(self, name: str) -> np.ndarray:
        spectra = self.__dict__.get("spectra") or {}
        if name in spectra:
            return spectra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def spectrum(self, level: str) -> np.ndarray:
        """Im ε at ``level``, ``[n_materials, len(components) · n_grid]``."""
        try:
            return self.spectra[level]
        except KeyError:
            raise KeyError(
                f"no {level!r} spectra in this table (levels: {', '.join(self.spectra)})"
            ) from None

    def subset(self, mask) -> DatasetArrays:
        idx = np.flatnonzero(np.asarray(mask))
        return DatasetArrays(
            [self.ids[i] for i in idx],
            self.splits[idx],
            self.nsites[idx],
            [self.formulas[i] for i in idx],
            {lv: v[idx] for lv, v in self.spectra.items()},
            [self.structures[i] for i in idx],
            self.grid,
            self.protocols[idx],
            self.numerics[idx],
            self.components,
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
    calculation phases, s), protocol (name: the physics), numerics (name), excluded (reason or None), path
    (absolute), sha256 (of the file's bytes).
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
        "numerics": record_numerics(rec),
        "excluded": exclusion(rec["mat_id"]),
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _canonical(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def _write_bytes_once(data: bytes, path: Path) -> None:
    """Write validated gzip'ed record bytes atomically to a new file (``os.link``: never replaces one)."""
    validate_record(parse_record_bytes(data, str(path)), str(path))
    write_bytes_atomic(data, path)
