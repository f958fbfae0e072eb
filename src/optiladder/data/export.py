"""Dataset export for learning: trace Im ε on a model grid, with ids, splits and cell sizes.

``export(store, out, level=..., splits=...)`` writes ``.npz`` (numpy) or ``.parquet`` (pyarrow). Arrays:

* ``ids`` ``[n]`` (str), ``splits`` ``[n]`` (str), ``nsites`` ``[n]`` (int), ``formulas`` ``[n]`` (str)
* ``omega`` ``[n_grid]``: the grid in eV (default :data:`optiladder.targets.DEFAULT_GRID`, or a target's grid)
* ``eps_im`` ``[n, n_grid]``: the isotropic Im ε = (xx + yy + zz)/3 at the chosen level (one of
  :data:`optiladder.targets.LEVELS`)

:func:`training_arrays` is the entry point for training code: it takes split names and raises
:class:`~optiladder.data.splits.LeakageError` for validation or test (checked on the names *and* on every id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..targets import DEFAULT_GRID, LEVELS, Grid
from .splits import SPLITS, check_split_names, check_trainable
from .store import DatasetArrays, Store

log = logging.getLogger(__name__)

Level = str
LEVEL_NAMES: tuple[str, ...] = LEVELS
FORMATS = (".npz", ".parquet")


class ExportError(ValueError):
    """An export that cannot be made; ``str(err)`` is one line, ``"<name>: <problem>"``."""

    def __init__(self, name, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


@dataclass
class Exported:
    """What :func:`export` wrote."""

    path: Path
    n: int
    level: str
    splits: tuple[str, ...]
    by_split: dict[str, int]
    skipped: list[str]
    grid: Grid = DEFAULT_GRID

    def line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.by_split.items()) or "none"
        skip = f"; {len(self.skipped)} invalid record(s) skipped" if self.skipped else ""
        return (
            f"{self.path}: {self.n} materials ({parts}), {self.level.upper()} trace Im ε on {self.grid.n} points "
            f"({self.grid.start:g}–{self.grid.stop:g} eV){skip}"
        )


def _check(level: str, splits: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    if level not in LEVEL_NAMES:
        raise ExportError("--level", f"{level!r} is not one of {', '.join(LEVEL_NAMES)}")
    splits = tuple(splits) or ("train",)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ExportError("--split", f"unknown split(s) {', '.join(unknown)}; known: {', '.join(SPLITS)}")
    return level, splits


def select(store: Store, splits: Sequence[str], grid: Grid = DEFAULT_GRID) -> DatasetArrays:
    """Arrays on ``grid`` of the store's valid records in the given splits (sorted by id)."""
    table = store.table(grid=grid)
    return table.split(*splits)


def training_arrays(
    splits: Sequence[str] = ("train",), *, level: Level = LEVELS[-1], store: Store | None = None
) -> tuple[list[str], np.ndarray]:
    """(ids, trace Im ε ``[n, n_grid]`` on the default grid) for training; raises ``LeakageError`` for
    validation/test splits or ids."""
    check_split_names(splits)
    level, splits = _check(level, splits)
    table = select(store or Store(), splits)
    check_trainable(table.ids, context="training_arrays")
    return table.ids, getattr(table, level)


def export(
    store: Store,
    out: str | Path,
    *,
    level: Level = LEVELS[-1],
    splits: Sequence[str] = ("train",),
    training: bool = False,
    grid: Grid = DEFAULT_GRID,
) -> Exported:
    """Write the selected records to ``out`` (``.npz`` or ``.parquet``); see the module docstring for the arrays.

    ``training``: the export feeds a training run; validation/test splits then raise ``LeakageError``.
    """
    out = Path(out)
    if not out.name.endswith(FORMATS):
        raise ExportError(out, f"unknown format; use one of {', '.join(FORMATS)}")
    level, splits = _check(level, splits)
    if training:
        check_split_names(splits)
    store.errors = []
    table = select(store, splits, grid)
    if training:
        check_trainable(table.ids, context="export --training")
    eps = np.asarray(getattr(table, level), dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "level": level,
        "splits": list(splits),
        "quantity": "isotropic Im eps = (xx+yy+zz)/3",
        "grid": {**grid.to_dict(), "note": "linear interpolation of the stored GPAW grid"},
        "store": str(store.root),
    }
    if out.suffix == ".npz":
        tmp = out.with_name(f".{out.name}.tmp.npz")
        np.savez_compressed(
            tmp,
            ids=np.array(table.ids, dtype=str),
            splits=np.asarray(table.splits, dtype=str),
            nsites=np.asarray(table.nsites, dtype=np.int32),
            formulas=np.array(table.formulas, dtype=str),
            omega=grid.values().astype(np.float32),
            eps_im=eps,
            meta=np.array(json.dumps(meta)),
        )
        tmp.replace(out)
    else:
        _write_parquet(out, table, eps, meta, grid)
    by_split = {s: int(np.sum(np.asarray(table.splits) == s)) for s in splits}
    return Exported(out, len(table), level, splits, by_split, list(store.errors), grid)


def _write_parquet(out: Path, table: DatasetArrays, eps: np.ndarray, meta: dict, grid: Grid) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(out, "parquet export needs pyarrow (pip install pyarrow); or write .npz") from None
    n_grid = grid.n
    values = pa.array(eps.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(values, n_grid)
    tab = pa.table(
        {
            "mat_id": pa.array(table.ids, type=pa.string()),
            "split": pa.array([str(s) for s in table.splits], type=pa.string()),
            "nsites": pa.array(np.asarray(table.nsites, dtype=np.int32)),
            "formula": pa.array(table.formulas, type=pa.string()),
            "eps_im": column,
        }
    )
    meta = {**meta, "omega_eV": [round(float(x), 6) for x in grid.values()]}
    tab = tab.replace_schema_metadata({b"optiladder": json.dumps(meta).encode()})
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(tab, tmp, compression="zstd")
    tmp.replace(out)


def read_export(path: str | Path) -> dict[str, np.ndarray]:
    """Read an export back: ``{ids, splits, nsites, formulas, omega, eps_im}`` (as in the module docstring)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("ids", "splits", "nsites", "formulas", "omega", "eps_im")}
    import pyarrow.parquet as pq

    tab = pq.read_table(path)
    meta = json.loads(tab.schema.metadata[b"optiladder"])
    n = tab.num_rows
    eps = np.asarray(tab.column("eps_im").combine_chunks().flatten(), dtype=np.float32).reshape(n, -1)
    return {
        "ids": np.array(tab.column("mat_id").to_pylist(), dtype=str),
        "splits": np.array(tab.column("split").to_pylist(), dtype=str),
        "nsites": np.array(tab.column("nsites").to_pylist(), dtype=np.int32),
        "formulas": np.array(tab.column("formula").to_pylist(), dtype=str),
        "omega": np.asarray(meta["omega_eV"], dtype=np.float32),
        "eps_im": eps,
    }
