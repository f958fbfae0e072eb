"""Spectrum records: one gzip'ed JSON object per material (PROTOCOL.md "Record format").

Format version 1 is the seed format of PROTOCOL.md as it is (no ``format_version`` key); version 2 adds
``format_version``, ``provenance`` (code versions, host, start/end time, structure hashes) and ``split``.
Both are read. Every record is validated when written and when read; a bad file raises :class:`RecordError`
with a one-line ``"<file>: <problem>"`` message. Writes are atomic (temporary file in the same folder, fsync,
rename), so a crash never leaves a truncated record under the final name.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..spectra import COMPONENTS, LEVELS, Spectrum

FORMAT_VERSION = 2
SPECTRA_KEYS = tuple(f"{lv}_{part}_{c}" for lv in LEVELS for part in ("im", "re") for c in COMPONENTS)
REQUIRED = ("mat_id", "formula", "nsites", "structure", "protocol", "omega", "spectra")


class RecordError(ValueError):
    """A missing, unreadable or invalid record; ``str(err)`` is ``"<file>: <problem>"``."""

    def __init__(self, name, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


def round_sig(values, digits: int = 5) -> list[float]:
    """Floats rounded to ``digits`` significant digits (the stored precision)."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, float).ravel()]


def validate_record(rec: dict, name: str = "record", known_ids: set[str] | None = None) -> dict:
    """Check a record's structure and numbers; return it unchanged or raise :class:`RecordError`.

    Checks: required keys; ``mat_id`` known (if ``known_ids`` is given); ``omega`` ascending, starting at 0,
    finite; every one of the 12 spectra present, finite, and as long as ``omega``; ``nsites`` matches the
    structure.
    """
    if not isinstance(rec, dict):
        raise RecordError(name, "not a JSON object")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise RecordError(name, f"missing keys {', '.join(missing)}")
    if not isinstance(rec["mat_id"], str) or not rec["mat_id"]:
        raise RecordError(name, "mat_id is not a non-empty string")
    if known_ids is not None and rec["mat_id"] not in known_ids:
        raise RecordError(name, f"unknown material id {rec['mat_id']}")
    try:
        omega = np.asarray(rec["omega"], float)
    except (TypeError, ValueError):
        raise RecordError(name, "omega is not a list of numbers") from None
    if omega.ndim != 1 or omega.size < 10:
        raise RecordError(name, f"omega has {omega.size} points")
    if not np.all(np.isfinite(omega)):
        raise RecordError(name, "omega has non-finite values")
    if omega[0] != 0.0:
        raise RecordError(name, f"omega starts at {omega[0]} eV, not 0")
    if np.any(np.diff(omega) <= 0):
        raise RecordError(name, "omega is not strictly ascending")
    spectra = rec["spectra"]
    if not isinstance(spectra, dict):
        raise RecordError(name, "spectra is not an object")
    for key in SPECTRA_KEYS:
        if key not in spectra:
            raise RecordError(name, f"spectrum {key} missing")
        try:
            arr = np.asarray(spectra[key], float)
        except (TypeError, ValueError):
            raise RecordError(name, f"spectrum {key} is not a list of numbers") from None
        if arr.shape != omega.shape:
            raise RecordError(name, f"spectrum {key} has {arr.size} points, omega has {omega.size}")
        if not np.all(np.isfinite(arr)):
            raise RecordError(name, f"spectrum {key} has non-finite values (NaN or inf)")
    sites = rec["structure"].get("sites") if isinstance(rec["structure"], dict) else None
    if not sites or len(sites) != rec["nsites"]:
        raise RecordError(name, f"nsites {rec['nsites']} does not match the structure")
    return rec


def read_record(path: str | Path, known_ids: set[str] | None = None) -> dict:
    """Read and validate one record (``.json.gz`` or ``.json``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        rec = json.loads(raw)
    except FileNotFoundError:
        raise RecordError(path, "no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise RecordError(path, f"unreadable or truncated ({type(exc).__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(path, f"invalid JSON ({exc})") from None
    # JSON has no NaN in the standard, but Python writes and reads it: validation catches it
    return validate_record(rec, str(path), known_ids)


def encode_record(rec: dict) -> bytes:
    """Compact gzip'ed JSON bytes of a record (deterministic: no timestamp in the gzip header)."""
    text = json.dumps(rec, separators=(",", ":"), allow_nan=False)
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def write_record(rec: dict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Validate and write a record atomically; refuse to replace an existing file unless ``overwrite``."""
    path = Path(path)
    validate_record(rec, str(path))
    if path.exists() and not overwrite:
        raise RecordError(path, "exists already (records are append-only)")
    return write_bytes_atomic(encode_record(rec), path, overwrite=overwrite)


def write_bytes_atomic(data: bytes, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write bytes to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    Without ``overwrite`` the final step is ``os.link``, which fails if the target exists, so two writers of the
    same material cannot race: the second gets :class:`RecordError` and the first file stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise RecordError(path, "exists already (records are append-only)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def record_spectra(rec: dict) -> dict[str, Spectrum]:
    """``{"ipa": Spectrum, "rpa": Spectrum}`` with the x/y/z components (Im and Re) of a record."""
    omega = np.asarray(rec["omega"], float)
    sp = rec["spectra"]
    prov = {"mat_id": rec["mat_id"], "protocol": rec["protocol"].get("name"), "code": rec.get("code")}
    return {
        lv: Spectrum(
            omega=omega,
            im={c: sp[f"{lv}_im_{c}"] for c in COMPONENTS},
            re={c: sp[f"{lv}_re_{c}"] for c in COMPONENTS},
            level=lv,
            provenance=dict(prov, level=lv),
        )
        for lv in LEVELS
    }


def record_path(root: str | Path, mat_id: str) -> Path:
    return Path(root) / f"{mat_id}.json.gz"


def is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
