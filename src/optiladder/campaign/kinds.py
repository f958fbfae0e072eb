"""Job kinds of the campaign: what a job computes, with which protocol, on which materials.

* ``material`` — IPA and RPA spectra (``--protocol``, default gpaw-pbe-v1) of the structure list, every split,
  claimed by stage (:mod:`.stages`); records in ``dataset/records``.
* ``ipa-lite`` — the cheap lower rung of the ladder: IPA-only spectra of ``gpaw-pbe-ipa-lite``
  (:mod:`optiladder.engine.protocols`) of **training** structures only (the train split and unlisted ones;
  validation and test materials are never enqueued, and a job of one fails permanently without being computed),
  smallest cells first (or by ``--order``); records in ``dataset/ipa-lite``, read back by
  :func:`optiladder.data.store.cheap_ipa_records`.

A campaign database holds the jobs of one kind and one protocol (:func:`.runner.check_meta` binds them at first
use), so each kind has its own default database; leases, heartbeats, exactly-once records and kill -9 recovery
are the same for every kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..data.splits import held_out
from .queue import NewJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """One kind of campaign job. ``protocol``: the fixed protocol (``None``: the ``--protocol`` option)."""

    name: str
    description: str
    default_db: str
    protocol: str | None = None
    #: training data only: validation and test materials are refused
    train_only: bool = False
    #: claimed by stage (:mod:`.stages`); otherwise smallest cell first (then ``--order``)
    staged: bool = True


KINDS: dict[str, JobKind] = {
    k.name: k
    for k in (
        JobKind("material", "IPA + RPA spectra of the structure list, by stage", "campaign.db"),
        JobKind(
            "ipa-lite",
            "cheap IPA-only spectra (gpaw-pbe-ipa-lite) of training structures, smallest first",
            "campaign-ipa-lite.db",
            protocol="gpaw-pbe-ipa-lite",
            train_only=True,
            staged=False,
        ),
    )
}


def get_kind(name: str | JobKind) -> JobKind:
    """A :class:`JobKind` by name; ``ValueError`` naming the known ones otherwise."""
    if isinstance(name, JobKind):
        return name
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(KINDS)}") from None


def kind_jobs(kind: str | JobKind, jobs: Iterable[NewJob]) -> tuple[list[NewJob], list[tuple[NewJob, str]]]:
    """The jobs of ``kind`` for these inputs, and the refused ones with a one-line reason each
    (``<id>: a validation material; ipa-lite jobs make training data only``)."""
    k = get_kind(kind)
    keep: list[NewJob] = []
    refused: list[tuple[NewJob, str]] = []
    for j in jobs:
        split = held_out(j.id, j.split) if k.train_only else None
        if split:
            refused.append((j, f"{j.id}: a {split} material; {k.name} jobs make training data only"))
            continue
        keep.append(replace(j, kind=k.name))
    return keep, refused
