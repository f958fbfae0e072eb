"""The ``gw`` job kind's records: G0W0@PBE labels (:mod:`optiladder.engine.gw`) under the queue's discipline.

A ``gw`` job runs :func:`optiladder.engine.gw.compute_gw` in the calculation child (:mod:`.child`) and leaves a
G0W0 record (gzipped JSON, ~5 KB) that the task stores with :class:`GWStore`: atomically (temporary file, fsync,
``os.link``: a second writer of the same material gets an error and the first file stays), never overwritten,
invalid files reported by name and left alone. The store folder of a production protocol is the dataset's
``dataset/gw/<protocol>/`` (:func:`gw_store_root`); the tiny ``test`` preset needs its own folder outside the
dataset. The campaign database indexes each record like a spectra record (:func:`gw_index`: ``gap`` is the
G0W0 gap, ``gap_direct`` the direct one, ``seconds`` the calculation's ground-state + G0W0 seconds).

The wavefunction export that the downstream model joins with these labels is a cache outside git: it is
regenerated per labelled material by ``optiladder wavefunction export --from-gw dataset/gw/gpaw-g0w0-v2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.store import Store, default_root, record_index
from ..engine.gw import (  # noqa: F401  (encode_gw_record: re-exported for the child)
    encode_gw_record,
    get_gw_protocol,
    gw_record_path,
    read_gw_record,
    write_gw_record,
)
from ..engine.records import RecordError


def gw_store_root(protocol: str) -> Path:
    """The dataset folder of a G0W0 protocol's records: ``dataset/gw/<protocol>`` beside ``dataset/records``."""
    from ..wavefunction.gapmodel import gw_root  # numpy only: the one definition of the folder

    get_gw_protocol(protocol)  # unknown names raise ValueError
    return gw_root(protocol)


def resolve_gw_store(protocol: str, store: Path | None) -> tuple[Path, bool]:
    """(store root, whether it holds non-production records) for a ``gw`` campaign.

    Production protocols default to :func:`gw_store_root`; a non-production one (``test``) needs an explicit
    folder, never one inside the dataset's ``dataset/`` tree. Raises ``ValueError`` (one line) otherwise.
    """
    gp = get_gw_protocol(protocol)
    if gp.production:
        return (Path(store).resolve() if store else gw_store_root(protocol).resolve()), False
    if store is None:
        raise ValueError(
            f"records of the non-production G0W0 protocol {protocol!r} need their own --store folder"
        )
    root = Path(store).resolve()
    dataset = default_root().resolve().parent
    if root == dataset or dataset in root.parents:
        raise ValueError(
            f"{store}: records of the non-production G0W0 protocol {protocol!r} may not go into {dataset}"
        )
    return root, True


class GWStore(Store):
    """A folder of G0W0 records, ``<mat_id>.json.gz`` each, append-only: the spectra :class:`Store`'s folder
    layout, listing and refusals (``refused/<mat_id>.json``), with G0W0 records read and written."""

    def __post_init__(self) -> None:
        self.root = Path(self.root)  # any material id (no Alexandria check of spectra records)

    def __contains__(self, mat_id: str) -> bool:
        return gw_record_path(self.root, mat_id).exists()

    def get(self, mat_id: str) -> dict:
        """The record of ``mat_id``; :class:`RecordError` (``file: problem``) for an invalid file or a wrong id."""
        return read_gw_result(gw_record_path(self.root, mat_id), mat_id)

    def add(self, rec: dict, *, allow_test: bool = False) -> Path:
        """Write a record atomically; :class:`RecordError` if the material is there already (never replaced) or
        if a non-production record would enter a store of production records."""
        path = gw_record_path(self.root, rec["mat_id"])
        production = get_gw_protocol(rec["protocol"]["name"]).production
        if not production and not allow_test:
            raise RecordError(
                path, f"a {rec['protocol']['name']!r} (non-production) record in a production store"
            )
        try:
            return write_gw_record(rec, path)
        except FileExistsError:
            raise RecordError(path, "exists already (records are append-only)") from None


def read_gw_result(path: str | Path, mat_id: str | None = None) -> dict:
    """Read a G0W0 record as the task reads a result; :class:`RecordError` for a bad file or another material."""
    try:
        rec = read_gw_record(path)
    except ValueError as exc:
        raise RecordError(path, str(exc).removeprefix(f"{path}: ")) from None
    if mat_id is not None and rec["mat_id"] != mat_id:
        raise RecordError(path, f"holds material {rec['mat_id']}, not {mat_id}")
    return rec


def gw_index(rec: dict, path: str | Path, data: bytes | None = None) -> dict[str, Any]:
    """The campaign database's ``records`` row of a G0W0 record: the spectra records' index
    (:func:`~optiladder.data.store.record_index`) with the quasiparticle gaps and no numerics."""
    row = record_index(rec, path, data)
    row.update(gap=rec.get("gap_g0w0"), gap_direct=rec.get("gap_g0w0_direct"), numerics=None)
    return row


def compute_job(spec: dict, job_dir: Path) -> dict:
    """The calculation of one ``gw`` job (in the child process): a G0W0 record of ``spec['source']``."""
    from ..engine.gw import compute_gw

    return compute_gw(
        spec["source"],
        spec["protocol"],
        mat_id=spec["mat_id"],
        max_atoms=int(spec.get("max_atoms") or 2),
        workdir=job_dir,
    )
