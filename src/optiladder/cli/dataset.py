"""``optiladder dataset import|stats|export``: the record store (import folders, count, export for learning)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app

dataset_app = typer.Typer(
    help="The dataset store: import record folders, statistics, export for training.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")

StoreOption = Annotated[
    Path | None, typer.Option("--store", help="Record folder (default: the dataset's dataset/records)")
]


def _store(store: Path | None):
    from ..data.store import Store

    return Store(store) if store else Store()


@dataset_app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="Folder of records (<mat_id>.json.gz)")],
    store: StoreOption = None,
    db: Annotated[
        str | None,
        typer.Option(help="Also index the imported records in this campaign database (if it exists)"),
    ] = None,
    allow_test: Annotated[bool, typer.Option(help="Accept records of the 'test' protocol")] = False,
) -> None:
    """Import records (validated; existing ones are never replaced; running it again changes nothing)."""
    from ..engine.records import RecordError

    st = _store(store)
    try:
        report = st.import_dir(source, allow_test=allow_test)
    except RecordError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for err in report.invalid:
        typer.echo(f"skipped: {err}", err=True)
    typer.echo(f"{source} -> {st.root}: {report.line()}")
    if db:
        from ..campaign import QueueError, index_store, open_queue

        try:
            with open_queue(db, create=False) as q:
                n, _ = index_store(q, st.root)
            typer.echo(f"{db}: {n} records indexed")
        except QueueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


@dataset_app.command("stats")
def stats(
    store: StoreOption = None,
    db: Annotated[
        str,
        typer.Option(help="Campaign database for the failures (skipped if the SQLite file does not exist)"),
    ] = "campaign.db",
) -> None:
    """Records by split, cell size, level, protocol (physics) and numerics; excluded materials with their reason;
    invalid files; campaign failures from the database."""
    from ..data.stats import dataset_stats, format_stats

    failures = None
    if db.startswith(("postgresql://", "postgres://")) or Path(db).is_file():
        from ..campaign import QueueError, campaign_failures

        try:
            failures = campaign_failures(db)
        except QueueError as exc:
            typer.echo(f"warning: {exc}", err=True)
    typer.echo(format_stats(dataset_stats(_store(store), failures)))


@dataset_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Output file: .npz or .parquet")],
    level: Annotated[str, typer.Option(help="Level of theory (a rung of the ladder, e.g. rpa)")] = "rpa",
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Split(s) to export (repeat; default: train)")
    ] = None,
    store: StoreOption = None,
    training: Annotated[
        bool, typer.Option(help="The export feeds training: refuse validation/test (LeakageError)")
    ] = False,
) -> None:
    """Trace Im ε on the model grid (optiladder.targets.DEFAULT_GRID), with ids, splits, nsites and formulas."""
    from ..data.export import ExportError
    from ..data.export import export as run
    from ..data.splits import LeakageError

    try:
        result = run(_store(store), out, level=level, splits=tuple(split or ("train",)), training=training)
    except (ExportError, LeakageError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for err in result.skipped:
        typer.echo(f"skipped: {err}", err=True)
    typer.echo(result.line())
