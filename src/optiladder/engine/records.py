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
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..spectra import COMPONENTS, LEVELS, Spectrum

FORMAT_VERSION = 2
SPECTRA_KEYS = tuple(f"{lv}_{part}_{c}" for lv in LEVELS for part in ("im", "re") for c in COMPONENTS)
REQUIRED = ("mat_id", "formula", "nsites", "structure", "protocol", "omega", "spectra")
#: Largest record accepted when reading (bytes, decompressed); a record is ~8.5 KB gzip'ed, ~60 KB of JSON.
MAX_RECORD_BYTES = 16 * 1024 * 1024


class RecordError(ValueError):
    """A missing, unreadable or invalid record; ``str(err)`` is ``"<file>: <problem>"``."""

    def __init__(self, name, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


def round_sig(values, digits: int = 5) -> list[float]:
    """Floats rounded to ``digits`` significant digits (the stored precision)."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, float).ravel()]


@lru_cache(maxsize=1)
def _element_symbols() -> frozenset[str]:
    from pymatgen.core.periodic_table import Element

    return frozenset(el.symbol for el in Element)


def _check_structure(struct, name: str) -> None:
    """The stored structure is a pymatgen dict of an ordered crystal: finite 3×3 lattice, sites with a known
    element, occupancy 1 and three finite fractional coordinates."""
    if not isinstance(struct, dict):
        raise RecordError(name, "structure is not an object")
    lattice = struct.get("lattice")
    try:
        matrix = np.asarray(lattice["matrix"], dtype=float) if isinstance(lattice, dict) else None
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise RecordError(name, "structure lattice is not a finite 3×3 matrix")
    sites = struct.get("sites")
    if not isinstance(sites, list) or not sites:
        raise RecordError(name, "structure has no list of sites")
    elements = _element_symbols()
    for k, site in enumerate(sites):
        species = site.get("species") if isinstance(site, dict) else None
        if not isinstance(species, list) or len(species) != 1 or not isinstance(species[0], dict):
            raise RecordError(name, f"structure site {k} has no single species")
        element = species[0].get("element")
        if not isinstance(element, str) or element not in elements:
            raise RecordError(name, f"structure site {k} has an unknown element {str(element)[:20]!r}")
        if species[0].get("occu", 1) != 1:
            raise RecordError(name, f"structure site {k} is partially occupied")
        abc = site.get("abc")
        if not isinstance(abc, list) or len(abc) != 3 or not all(is_finite_number(x) for x in abc):
            raise RecordError(name, f"structure site {k} has no three finite fractional coordinates")


def _check_types(rec: dict, name: str) -> None:
    """Types of the scalar and object fields readers rely on (``nsites``, ``formula``, ``protocol``, ...)."""
    if not isinstance(rec["formula"], str):
        raise RecordError(name, "formula is not a string")
    if isinstance(rec["nsites"], bool) or not isinstance(rec["nsites"], int) or rec["nsites"] < 1:
        raise RecordError(name, "nsites is not a positive integer")
    if not isinstance(rec["protocol"], dict) or not isinstance(rec["protocol"].get("name"), str):
        raise RecordError(name, "protocol is not an object with a name")
    for key in ("split", "code"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise RecordError(name, f"{key} is not a string")
    for key in ("gap_indirect", "gap_direct"):
        if rec.get(key) is not None and not is_finite_number(rec[key]):
            raise RecordError(name, f"{key} is not a finite number")
    if rec.get("spacegroup") is not None and (
        isinstance(rec["spacegroup"], bool) or not isinstance(rec["spacegroup"], int)
    ):
        raise RecordError(name, "spacegroup is not an integer")
    seconds = rec.get("seconds")
    if seconds is not None and (
        not isinstance(seconds, dict) or not all(is_finite_number(v) for v in seconds.values())
    ):
        raise RecordError(name, "seconds is not an object of finite numbers")


def validate_record(rec: dict, name: str = "record", known_ids: set[str] | None = None) -> dict:
    """Check a record's structure and numbers; return it unchanged or raise :class:`RecordError`.

    Checks: required keys; ``mat_id`` known (if ``known_ids`` is given); types of ``formula``, ``nsites``,
    ``protocol`` (an object with a name), ``split``, ``code``, gaps, ``spacegroup``, ``seconds``; ``omega``
    ascending, starting at 0, finite; every spectrum of the record's levels (the protocol block's ``levels``,
    default IPA and RPA: 12 spectra) present, finite, and as long as ``omega``;
    the structure an ordered crystal of known elements whose site count is ``nsites``.
    """
    if not isinstance(rec, dict):
        raise RecordError(name, "not a JSON object")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise RecordError(name, f"missing keys {', '.join(missing)}")
    if not isinstance(rec["mat_id"], str) or not rec["mat_id"]:
        raise RecordError(name, "mat_id is not a non-empty string")
    _check_types(rec, name)
    if known_ids is not None and rec["mat_id"] not in known_ids:
        raise RecordError(name, f"unknown material id {rec['mat_id'][:80]}")
    try:
        omega = np.asarray(rec["omega"], float)
    except (TypeError, ValueError, OverflowError):
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
    for key in spectra_keys(rec["protocol"].get("levels"), name):
        if key not in spectra:
            raise RecordError(name, f"spectrum {key} missing")
        try:
            arr = np.asarray(spectra[key], float)
        except (TypeError, ValueError, OverflowError):
            raise RecordError(name, f"spectrum {key} is not a list of numbers") from None
        if arr.shape != omega.shape:
            raise RecordError(name, f"spectrum {key} has {arr.size} points, omega has {omega.size}")
        if not np.all(np.isfinite(arr)):
            raise RecordError(name, f"spectrum {key} has non-finite values (NaN or inf)")
    _check_structure(rec["structure"], name)
    if len(rec["structure"]["sites"]) != rec["nsites"]:
        raise RecordError(name, f"nsites {rec['nsites']} does not match the structure")
    return rec


def spectra_keys(levels=None, name: str = "record") -> tuple[str, ...]:
    """The spectra a record must hold: ``{level}_{im,re}_{x,y,z}`` for each of its protocol's ``levels``
    (``None``: every level of :data:`~optiladder.targets.LEVELS`, as in gpaw-pbe-v1 records)."""
    if levels is None:
        return SPECTRA_KEYS
    if not isinstance(levels, list) or not levels or any(lv not in LEVELS for lv in levels):
        raise RecordError(name, f"protocol levels {str(levels)[:80]} are not a list of known levels {LEVELS}")
    return tuple(f"{lv}_{part}_{c}" for lv in levels for part in ("im", "re") for c in COMPONENTS)


def record_levels(rec: dict) -> tuple[str, ...]:
    """The rungs a (validated) record holds: its protocol's ``levels``, or every level when not stated."""
    levels = (rec.get("protocol") or {}).get("levels")
    return tuple(levels) if levels else tuple(LEVELS)


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress gzip bytes (all members), refusing more than ``limit`` bytes of output (a gzip bomb)."""
    out = bytearray()
    while raw:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(raw, limit + 1 - len(out))
        if len(out) > limit:
            raise RecordError("", f"larger than {limit} bytes uncompressed")
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        raw = d.unused_data.lstrip(b"\0")
    return bytes(out)


def parse_record_bytes(raw: bytes, name: str, *, gz: bool = True) -> dict:
    """The JSON object of a record file's bytes; every malformation is a :class:`RecordError` naming ``name``.

    Catches corrupt or truncated compression (gzip, zlib), a record larger than :data:`MAX_RECORD_BYTES`
    uncompressed, invalid UTF-8 or JSON, nesting too deep for the parser (``RecursionError``).
    """
    try:
        if gz:
            raw = _gunzip(raw, MAX_RECORD_BYTES)
        elif len(raw) > MAX_RECORD_BYTES:
            raise RecordError(name, f"larger than {MAX_RECORD_BYTES} bytes")
        return json.loads(raw)
    except RecordError as exc:
        raise RecordError(name, exc.problem) from None
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise RecordError(name, f"unreadable or truncated ({type(exc).__name__}: {exc})") from None
    except UnicodeDecodeError as exc:
        raise RecordError(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(name, f"invalid JSON ({exc})") from None
    except RecursionError:
        raise RecordError(name, "invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise RecordError(name, f"invalid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None


def read_record(path: str | Path, known_ids: set[str] | None = None) -> dict:
    """Read and validate one record (``.json.gz`` or ``.json``); any problem is a :class:`RecordError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(path, "no such file") from None
    except OSError as exc:
        raise RecordError(path, f"unreadable ({type(exc).__name__}: {exc.strerror or exc})") from None
    rec = parse_record_bytes(raw, str(path), gz=path.name.endswith(".gz"))
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
    """``{"ipa": Spectrum, "rpa": Spectrum}`` with the x/y/z components (Im and Re) of a record (only
    ``{"ipa": …}`` for an IPA-only record)."""
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
        for lv in record_levels(rec)
    }


def record_path(root: str | Path, mat_id: str) -> Path:
    return Path(root) / f"{mat_id}.json.gz"


def is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
