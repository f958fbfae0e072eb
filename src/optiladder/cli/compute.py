"""``optiladder compute``: IPA and RPA dielectric tensors of crystals with GPAW."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..engine.numerics import DEFAULT_NUMERICS, NUMERICS
from ._app import app


@app.command()
def compute(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Structure files (CIF, POSCAR, extxyz, any ASE format, "
            "pymatgen JSON) or bundled Alexandria ids (agm…)"
        ),
    ],
    protocol: Annotated[str, typer.Option(help="Protocol name (gpaw-pbe-v1, test)")] = "gpaw-pbe-v1",
    out: Annotated[
        Path, typer.Option(help="Output folder for records (<id>.json.gz) and plots (<id>.png)")
    ] = Path("spectra"),
    spacegroup: Annotated[int | None, typer.Option(help="Target space group for symmetrization")] = None,
    max_atoms: Annotated[int, typer.Option(help="Refuse cells with more atoms")] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace existing records")] = False,
    plot: Annotated[bool, typer.Option(help="Write a PNG of the trace of Im ε (IPA and RPA)")] = True,
    numerics: Annotated[
        str | None,
        typer.Option(
            help=f"How GPAW is driven (same physics): {', '.join(NUMERICS)} (default: {DEFAULT_NUMERICS})"
        ),
    ] = None,
    scissor: Annotated[
        str | None,
        typer.Option(
            help="gw: also write <id>.scissor-gw.json, the spectra shifted by the QP direct-gap correction (from"
            " the material's G0W0 record, else the gap model; docs/gw.md), Re ε by Kramers–Kronig"
        ),
    ] = None,
) -> None:
    """Compute each input; print one line per material; go on past bad inputs (exit 1 if any failed)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from ..engine.calculate import EngineError
    from ..engine.calculate import compute as run
    from ..engine.numerics import get_numerics
    from ..engine.protocols import get_protocol
    from ..engine.records import RecordError, record_path, record_spectra, write_record
    from ..structures import StructureError
    from ..viz import plot_record

    try:
        get_protocol(protocol)
        get_numerics(numerics)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if scissor not in (None, "gw"):
        raise typer.BadParameter(f"unknown scissor {scissor!r}; known: gw", param_hint="--scissor")
    failed = 0
    for item in inputs:
        try:
            rec = run(item, protocol, spacegroup=spacegroup, max_atoms=max_atoms, numerics=numerics)
            path = write_record(rec, record_path(out, rec["mat_id"]), overwrite=overwrite)
            if plot:
                plot_record(rec, path.with_name(f"{rec['mat_id']}.png"))
            sp = record_spectra(rec)
            secs = sum(rec["seconds"].values())
            typer.echo(
                f"{rec['mat_id']}  {rec['formula']:<10} gap {rec['gap_indirect']:.2f} eV  "
                f"eps_inf {'  '.join(f'{lv.upper()} {s.eps_inf:.3f}' for lv, s in sp.items())}  {secs:.1f} s  -> {path}"
            )
            if scissor == "gw":
                from ..wavefunction.gapmodel import write_scissored

                write_scissored(rec, sp, path.with_name(f"{rec['mat_id']}.scissor-gw.json"), typer.echo)
        except (StructureError, EngineError, RecordError) as exc:
            failed += 1
            typer.echo(f"error: {exc}", err=True)
        except (ValueError, ArithmeticError, MemoryError, OSError) as exc:  # this input's own steps failed
            failed += 1
            detail = " ".join(str(exc).split())[:200]
            typer.echo(f"error: {item}: {type(exc).__name__} ({detail})", err=True)
    if failed:
        typer.echo(f"{failed} of {len(inputs)} inputs failed", err=True)
        raise typer.Exit(1)
