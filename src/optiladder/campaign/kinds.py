"""Job kinds of the campaign: what a job computes, with which protocol, on which materials.

* ``material`` — IPA and RPA spectra (``--protocol``, default gpaw-pbe-v1) of the structure list, every split,
  claimed by stage (:mod:`.stages`); records in ``dataset/records``.
* ``ipa-lite`` — the cheap lower rung of the ladder: IPA-only spectra of ``gpaw-pbe-ipa-lite``
  (:mod:`optiladder.engine.protocols`) of **training** structures only (the train split and unlisted ones;
  validation and test materials are never enqueued, and a job of one fails permanently without being computed),
  smallest cells first (or by ``--order``); records in ``dataset/ipa-lite``, read back by
  :func:`optiladder.data.store.cheap_ipa_records`.
* ``gw`` — G0W0@PBE quasiparticle labels (``gpaw-g0w0-v2``, :mod:`optiladder.engine.gw`; ``--protocol test``
  for the tiny preset) of the ≤ 2-atom cells: train and unlisted (``none``) cells first, then validation and
  test cells (stage ``label`` before stage ``score``; within each, one cell per formula first, smallest volume
  first: G0W0 cost grows with the number of plane waves, i.e. the volume). Validation/test cells get computed labels too, but only to be
  scored: every training entry point of the wavefunction rung refuses them (``check_trainable``). Records in
  ``dataset/gw/<protocol>`` (:mod:`.gw_jobs`); metals fail permanently with their reason.

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
    #: what a job computes: ``spectra`` (:func:`optiladder.engine.calculate.compute`, spectra records) or ``gw``
    #: (:func:`optiladder.engine.gw.compute_gw`, G0W0 records, :mod:`.gw_jobs`)
    engine: str = "spectra"
    #: further protocols a campaign of this kind may be run with (``protocol`` is the default)
    alt_protocols: tuple[str, ...] = ()
    #: the largest cell of this kind: larger structures are not enqueued (None: no limit but ``--max-atoms``)
    max_atoms: int | None = None
    #: trainable (train, none) jobs are claimed before held-out ones (stages ``label`` then ``score``)
    trainable_first: bool = False


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
        JobKind(
            "gw",
            "G0W0@PBE labels (gpaw-g0w0-v2) of <= 2-atom cells, train/none first, then validation/test (scored only)",
            "campaign-gw.db",
            protocol="gpaw-g0w0-v2",
            staged=False,
            engine="gw",
            alt_protocols=("gpaw-g0w0-v1", "test"),
            max_atoms=2,
            trainable_first=True,
        ),
    )
}

#: the stages of a ``trainable_first`` kind: (name, priority, what)
SPLIT_STAGES: tuple[tuple[str, int, str], ...] = (
    ("label", 1, "train and unlisted cells: training labels"),
    ("score", 2, "validation and test cells: computed labels that are only ever scored"),
)


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
    (``<id>: a validation material; ipa-lite jobs make training data only``; ``<id>: 4 atoms; gw jobs take
    cells of <= 2 atoms``)."""
    k = get_kind(kind)
    keep: list[NewJob] = []
    refused: list[tuple[NewJob, str]] = []
    for j in jobs:
        if k.max_atoms is not None and j.nsites > k.max_atoms:
            refused.append(
                (j, f"{j.id}: {j.nsites} atoms; {k.name} jobs take cells of <= {k.max_atoms} atoms")
            )
            continue
        split = held_out(j.id, j.split) if k.train_only else None
        if split:
            refused.append((j, f"{j.id}: a {split} material; {k.name} jobs make training data only"))
            continue
        keep.append(replace(j, kind=k.name))
    return keep, refused


def split_stages(q, kind: str | JobKind) -> int:
    """Order the queued jobs of a ``trainable_first`` kind: stage ``label`` (train, none) before ``score``
    (validation, test); within a stage one cell per formula first (the smallest), then the other polymorphs
    (four He cells would otherwise open the queue), each round smallest volume first (G0W0 cost grows with the
    volume). Returns the jobs staged."""
    k = get_kind(kind)
    prio = {name: p for name, p, _ in SPLIT_STAGES}
    jobs = sorted(q.jobs(state="queued", kind=k.name), key=lambda j: (j["volume"] or 0.0, j["id"]))
    seen: dict[tuple[str, str | None], int] = {}
    rows = []
    for j in jobs:
        stage = "score" if held_out(j["id"], j["split"]) else "label"
        n = seen[(stage, j["formula"])] = seen.get((stage, j["formula"]), -1) + 1
        rows.append((j["id"], stage, prio[stage], n * 1e4 + (j["volume"] or 0.0)))
    return q.set_stages(rows)
