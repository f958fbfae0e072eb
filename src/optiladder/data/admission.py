"""Which records enter the dataset: the one rule, the physics/numerics of a record, and exclusions as data.

* :func:`dataset_refusal` — the one rule (used by :class:`~optiladder.data.store.Store` and the campaign):
  only records of a known production protocol enter the dataset.
* A record's **physics** is its protocol's name (``protocol.name``, e.g. ``gpaw-pbe-v1``); its **numerics**
  (how the engine computed it: dense or sparse solvers, blocking, …) is the optional top-level ``numerics``
  block, ``{"name": ...}``; a record without it was made by the baseline numerics :data:`BASELINE_NUMERICS`.
  Records that differ only in numerics may be pooled; records of different physics are kept apart (mixing
  them in one table is refused unless asked for).
* :data:`EXCLUSIONS` (``exclusions.json``) — materials kept on disk but never trained or evaluated on, each
  with its reason; ``optiladder dataset stats`` lists them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

#: the numerics of a record that has no ``numerics`` block (the engine's original dense path)
BASELINE_NUMERICS = "gpaw-dense-v1"


def protocol_name(protocol: str | dict | Any) -> str:
    """The name of a protocol given as a name, a record's ``protocol`` block or a ``Protocol``."""
    if isinstance(protocol, str):
        return protocol
    if isinstance(protocol, dict):
        return str(protocol.get("name", "?"))
    return str(getattr(protocol, "name", "?"))


def dataset_refusal(protocol: str | dict | Any) -> str | None:
    """Why records of ``protocol`` may not enter the dataset, or None if they may.

    The rule: the protocol is one of the engine's named protocols, is a production protocol (``test`` is a
    cheap preset whose spectra are not for the dataset) and its records belong in ``dataset/records`` (the
    IPA-only ``gpaw-pbe-ipa-lite`` records have their own folder, ``dataset/ipa-lite``).
    """
    from ..engine.protocols import PROTOCOLS

    name = protocol_name(protocol)
    proto = PROTOCOLS.get(name)
    if proto is None:
        return f"protocol {name!r} is unknown to this version of optiladder (known: {', '.join(PROTOCOLS)})"
    if not proto.production:
        return f"records of the {name!r} protocol are not production spectra and do not belong in the dataset"
    if proto.folder != "records":
        return (
            f"records of the {name!r} protocol hold {'+'.join(proto.levels)} only and belong in"
            f" dataset/{proto.folder}, not among the IPA + RPA records"
        )
    return None


def record_physics(rec: dict) -> str:
    """The physics of a record: its protocol's name."""
    return protocol_name(rec.get("protocol") or {})


def record_numerics(rec: dict) -> str:
    """The numerics that produced a record (its ``numerics`` block's name, or :data:`BASELINE_NUMERICS`)."""
    block = rec.get("numerics")
    return str(block.get("name", BASELINE_NUMERICS)) if isinstance(block, dict) else BASELINE_NUMERICS


@lru_cache(maxsize=1)
def exclusions() -> dict[str, str]:
    """Excluded material id → reason (``exclusions.json`` of this package)."""
    ref = resources.files("optiladder.data").joinpath("exclusions.json")
    rows = json.loads(ref.read_text())["excluded"]
    return {row["mat_id"]: row["reason"] for row in rows}


def exclusion(mat_id: str) -> str | None:
    """Why ``mat_id`` is excluded from training and evaluation, or None."""
    return exclusions().get(mat_id)
