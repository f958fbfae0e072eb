"""``optiladder campaign run|status``: the dataset campaign (job queue in SQLite/PostgreSQL, Dask execution)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ..engine.numerics import DEFAULT_NUMERICS, NUMERICS
from ._app import app

campaign_app = typer.Typer(
    help="The dataset campaign: compute the structure list by stage (evaluation 4-atom cells first), resumably.",
    no_args_is_help=True,
)
app.add_typer(campaign_app, name="campaign")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Campaign database: a SQLite file, or postgresql://user@host:port/dbname (default: campaign.db;"
        " campaign-ipa-lite.db for --kind ipa-lite, campaign-gw.db for --kind gw)",
    ),
]
KindOption = Annotated[
    str,
    typer.Option(
        "--kind",
        help="Job kind: material (IPA + RPA of every split, by stage) or ipa-lite (cheap IPA-only spectra of"
        " training structures into dataset/ipa-lite) or gw (G0W0 labels of <= 2-atom cells into dataset/gw/<protocol>)",
    ),
]


def _db(db: str | None, kind: str) -> str:
    from ..campaign.kinds import get_kind

    try:
        return db or get_kind(kind).default_db
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@campaign_app.command("run")
def run(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Structure files or folders (default: the bundled 3,538 Alexandria structures)"),
    ] = None,
    db: DbOption = None,
    kind: KindOption = "material",
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes, one core each (default 1; with --scheduler: its threads)"),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler (default: a LocalCluster)")
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(help="Protocol name (gpaw-pbe-v1, test; default gpaw-pbe-v1, or the kind's own)"),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            help="Record folder (default: the dataset's dataset/records, dataset/ipa-lite for --kind ipa-lite;"
            " required for --protocol test)"
        ),
    ] = None,
    max_atoms: Annotated[int, typer.Option(help="Skip cells with more atoms (they stay queued)")] = 64,
    time_budget: Annotated[
        str | None, typer.Option(help="Stop submitting after this long, e.g. 2h, 90m, 1h30m (exit 0)")
    ] = None,
    grace: Annotated[
        str,
        typer.Option(help="After the time budget, let running jobs finish for this long, then release them"),
    ] = "0s",
    per_job_timeout: Annotated[
        str, typer.Option(help="Time limit per material (transient failure, retried), e.g. 3600, 1h")
    ] = "1h",
    lease: Annotated[
        str,
        typer.Option(
            help="Lease length: a job whose worker stops heartbeating returns to the queue after it"
        ),
    ] = "120s",
    max_attempts: Annotated[int, typer.Option(help="Claims per job before a transient failure is final")] = 3,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Work root for the private job folders (default: a node-local temp folder)"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with ETA")] = True,
    order: Annotated[
        Path | None,
        typer.Option(
            help="A ranked id list (one material id per line) that orders jobs within their stage; replaces "
            "the ranks of an earlier --order"
        ),
    ] = None,
    numerics: Annotated[
        str | None,
        typer.Option(help=f"How GPAW is driven: {', '.join(NUMERICS)} (default: {DEFAULT_NUMERICS})"),
    ] = None,
    fork: Annotated[
        bool, typer.Option(help="Fork each job from a pre-imported process (no imports per job)")
    ] = True,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Log only warnings (not every finished job)")
    ] = False,
) -> None:
    """Run the campaign: claim, compute, store, until the queue is empty, the budget is spent or a signal.

    Claims go by stage (4-atom validation/test cells until ≥ 60 test and ≥ 40 validation are done, then the
    remaining ≤ 3-atom cells, then training 4-atom cells most diverse first, then the rest by size).
    ``--kind ipa-lite``: cheap IPA-only spectra (gpaw-pbe-ipa-lite) of training structures, smallest first,
    into dataset/ipa-lite, with its own database (default campaign-ipa-lite.db). ``--kind gw``: G0W0@PBE
    labels (gpaw-g0w0-v2) of the <= 2-atom cells, train/none cells first, into dataset/gw/gpaw-g0w0-v2 (default
    database campaign-gw.db; docs/gw.md: ``--time-budget 1h`` keeps it to about a core-hour per day).
    """
    from ..campaign.inputs import parse_duration
    from ..campaign.queue import QueueError
    from ..campaign.runner import CampaignError, CampaignOptions, run_campaign

    _logging(not quiet)
    try:
        opts = CampaignOptions(
            db=_db(db, kind),
            kind=kind,
            store=store,
            protocol=protocol,
            inputs=inputs or None,
            workers=workers,
            scheduler=scheduler,
            max_atoms=max_atoms,
            time_budget=parse_duration(time_budget),
            grace=parse_duration(grace) or 0.0,
            per_job_timeout=parse_duration(per_job_timeout) or 3600.0,
            lease=parse_duration(lease) or 120.0,
            max_attempts=max_attempts,
            work_root=workdir,
            progress=progress,
            order=order,
            numerics=numerics,
            fork=fork,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if workers is not None and workers < 1:
        raise typer.BadParameter(f"--workers: {workers} is not a positive number")
    try:
        summary = run_campaign(opts)
    except (CampaignError, QueueError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(summary.line())


@campaign_app.command("status")
def status(
    db: DbOption = None,
    kind: KindOption = "material",
    workers: Annotated[int, typer.Option(help="Workers assumed for the ETA")] = 1,
    failures: Annotated[int, typer.Option(help="How many recent failures to list (-1: all)")] = 10,
    numerics: Annotated[
        str | None,
        typer.Option(help=f"Numerics the queue runs with, for the ETA (default {DEFAULT_NUMERICS})"),
    ] = None,
) -> None:
    """Done / running / queued / failed by cell size and split, core-hours spent, cost per material by protocol
    and cell size, the per-structure cost model, and an ETA priced per structure (``--kind ipa-lite``: the
    cheap IPA campaign's own database)."""
    import tempfile
    from pathlib import Path

    from ..campaign.inputs import alexandria_jobs
    from ..campaign.kinds import get_kind, kind_jobs, split_stages
    from ..campaign.queue import QueueError, open_queue
    from ..campaign.runner import check_meta, index_store, resolve_protocol, resolve_store
    from ..campaign.stages import restage
    from ..campaign.status import campaign_status, format_status

    if numerics is not None and numerics not in NUMERICS:
        raise typer.BadParameter(f"unknown numerics {numerics!r}; known: {', '.join(NUMERICS)}")
    db = _db(db, kind)
    if "://" not in db and not Path(db).exists():
        # no campaign here (e.g. a fresh clone): the status the repository's records give, in a throw-away queue
        k = get_kind(kind)
        protocol = resolve_protocol(k.name, None)
        root = resolve_store(protocol, None, k.name)[0]
        with tempfile.TemporaryDirectory() as tmp, open_queue(str(Path(tmp) / "view.db")) as q:
            check_meta(q, protocol, root, k.name)
            q.add_jobs(kind_jobs(k, alexandria_jobs())[0])
            n, _ = index_store(q, root, k.name)
            if k.staged:
                restage(q)
            if k.trainable_first:
                split_stages(q, k)
            st = campaign_status(q, max_failures=failures, numerics=numerics)
        typer.echo(
            f"{db}: no campaign database here; status of the bundled structure list from the {n} records "
            f"in {root} (no running, failure or cost information)"
        )
        typer.echo(format_status(st, workers=workers))
        return
    try:
        with open_queue(db, create=False) as q:
            st = campaign_status(q, max_failures=failures, numerics=numerics)
    except QueueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(format_status(st, workers=workers))


def _logging(verbose: bool) -> None:
    logging.getLogger("optiladder").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("distributed", "tornado", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
