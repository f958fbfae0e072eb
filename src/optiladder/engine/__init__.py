"""The ab initio engine: protocols, one-material GPAW calculation, and record I/O (never imports torch)."""

from __future__ import annotations

from .protocols import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol
from .records import RecordError, read_record, record_spectra, validate_record, write_record

__all__ = [
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "Protocol",
    "RecordError",
    "compute",
    "get_protocol",
    "read_record",
    "record_spectra",
    "validate_record",
    "write_record",
]


def compute(*args, **kwargs):
    """See :func:`optiladder.engine.calculate.compute` (imported lazily)."""
    from .calculate import compute as _compute

    return _compute(*args, **kwargs)
