"""``optiladder wavefunction export|gw|train|downstream``: the wavefunction rung (VAE of Kohn–Sham states, G0W0)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from ._app import app

log = logging.getLogger(__name__)

wf_app = typer.Typer(
    help="Kohn–Sham states → VAE latents → G0W0 corrections (Hou, Wu & Qiu 2024), on ≤ 2-atom cells.",
    no_args_is_help=True,
)
app.add_typer(wf_app, name="wavefunction")

Inputs = Annotated[list[str], typer.Argument(help="Structure files or bundled Alexandria ids (agm…)")]


def _names(name: list[str] | None, inputs: list[str]) -> list[str]:
    names = list(name or [])
    if names and len(names) != len(inputs):
        raise typer.BadParameter(f"--name given {len(names)} times for {len(inputs)} inputs")
    return names


def _one_thread() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@wf_app.command("export")
def export(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Structure files or bundled Alexandria ids (agm…)")
    ] = None,
    from_gw: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-gw",
            help="Also export every material with a G0W0 record in this folder (repeat) whose export is missing:"
            " the regenerate step after a gw campaign (the downstream model joins both)",
        ),
    ] = None,
    protocol: Annotated[str, typer.Option(help="Wavefunction protocol (wf-pbe-v1, test)")] = "wf-pbe-v1",
    out: Annotated[
        Path | None, typer.Option(help="Folder (default: $OPTILADDER_CACHE/wavefunctions)")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing files")] = False,
    name: Annotated[
        list[str] | None, typer.Option(help="Material id to use for each input, in order (default: derived)")
    ] = None,
) -> None:
    """Export |φ_nk(r)|, ρ̃(r) and eigenvalues per material (one float16 .npz each); a batch goes on past errors."""
    _one_thread()
    from ..engine.calculate import EngineError
    from ..engine.wavefunctions import (
        export_wavefunctions,
        get_wf_protocol,
        wavefunction_path,
        write_wavefunctions,
    )
    from ..structures import StructureError

    try:
        get_wf_protocol(protocol)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    inputs = list(inputs or [])
    names = _names(name, inputs)
    todo: list[tuple[object, str | None]] = [
        (item, names[i] if names else None) for i, item in enumerate(inputs)
    ]
    todo += _missing_exports(from_gw or [], protocol, out)
    if not todo:
        typer.echo("nothing to export")
        raise typer.Exit(0)
    failed = 0
    for item, mat_id in todo:
        try:
            d = export_wavefunctions(item, protocol, mat_id=mat_id)
            path = write_wavefunctions(
                d, wavefunction_path(d["meta"]["mat_id"], protocol, out), overwrite=overwrite
            )
            m = d["meta"]
            typer.echo(
                f"{m['mat_id']}  {m['formula']:<8} {d['wf'].shape[0]} k × {d['wf'].shape[1]} bands on "
                f"{'×'.join(map(str, m['grid']))}  {sum(m['seconds'].values()):.1f} s  -> {path}"
            )
        except (StructureError, EngineError, FileExistsError) as exc:
            failed += 1
            typer.echo(f"FAILED {exc}", err=True)
    raise typer.Exit(1 if failed else 0)


def _missing_exports(folders: list[Path], protocol: str, out: Path | None) -> list[tuple[object, str]]:
    """(source, material id) of the G0W0-labelled materials in ``folders`` without an export: the bundled id
    for an Alexandria material, else the record's own (symmetrized) structure."""
    from pymatgen.core import Structure

    from ..engine.calculate import alexandria_entry
    from ..engine.gw import read_gw_record
    from ..engine.wavefunctions import wavefunction_path

    todo: dict[str, object] = {}
    for folder in folders:
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder}: not a folder of G0W0 records", param_hint="--from-gw")
        for path in sorted(folder.glob("*.json.gz")):
            try:
                rec = read_gw_record(path)
            except ValueError as exc:
                typer.echo(f"FAILED {exc}", err=True)
                continue
            mid = rec["mat_id"]
            if mid in todo or wavefunction_path(mid, protocol, out).exists():
                continue
            todo[mid] = mid if alexandria_entry(mid) else Structure.from_dict(rec["structure"])
    return [(src, mid) for mid, src in todo.items()]


@wf_app.command("gw")
def gw(
    inputs: Inputs,
    protocol: Annotated[
        str, typer.Option(help="G0W0 protocol (gpaw-g0w0-v2, gpaw-g0w0-v1, test)")
    ] = "gpaw-g0w0-v2",
    out: Annotated[Path, typer.Option(help="Folder of G0W0 records (<id>.json.gz)")] = Path("gw"),
    name: Annotated[
        list[str] | None, typer.Option(help="Material id to use for each input, in order (default: derived)")
    ] = None,
) -> None:
    """G0W0@PBE QP energies per material; existing records are kept (skipped); a batch goes on past errors."""
    _one_thread()
    from ..engine.calculate import EngineError
    from ..engine.gw import compute_gw, get_gw_protocol, gw_record_path, write_gw_record
    from ..structures import StructureError

    try:
        get_gw_protocol(protocol)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    names = _names(name, inputs)
    failed = 0
    for i, item in enumerate(inputs):
        mat_id = names[i] if names else None
        if mat_id and gw_record_path(out, mat_id).exists():
            typer.echo(f"{mat_id}: record exists, skipped")
            continue
        try:
            rec = compute_gw(item, protocol, mat_id=mat_id, name=mat_id)
            path = write_gw_record(rec, gw_record_path(out, rec["mat_id"]))
            typer.echo(
                f"{rec['mat_id']}  {rec['formula']:<8} PBE {rec['gap_pbe']:.3f} eV  G0W0 {rec['gap_g0w0']:.3f} eV  "
                f"{sum(rec['seconds'].values()):.0f} s  -> {path}"
            )
        except (StructureError, EngineError, FileExistsError) as exc:
            failed += 1
            typer.echo(f"FAILED {exc}", err=True)
    raise typer.Exit(1 if failed else 0)


@wf_app.command("show")
def show(path: Annotated[Path, typer.Argument(help="A G0W0 record (.json.gz)")]) -> None:
    """Print the gaps of a G0W0 record as JSON."""
    from ..engine.gw import read_gw_record

    try:
        rec = read_gw_record(path)
    except ValueError as exc:
        typer.echo(f"FAILED {exc}", err=True)
        raise typer.Exit(1) from None
    keys = ("mat_id", "formula", "gap_pbe", "gap_g0w0", "gap_pbe_direct", "gap_g0w0_direct", "seconds")
    typer.echo(json.dumps({k: rec[k] for k in keys}))


@wf_app.command("train")
def train(
    exports: Annotated[
        list[Path], typer.Argument(help="Wavefunction export files (.npz) or folders of them")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for the models (vae-c<width>/, vae-c<width>-z<latent>/)")
    ] = Path("vae"),
    channels: Annotated[list[int], typer.Option(help="Widths to train (one model each)")] = [4, 8],  # noqa: B006
    latent: Annotated[
        list[int], typer.Option(help="Latent sizes to train (repeat; one model per latent × width)")
    ] = [16],  # noqa: B006
    grid: Annotated[int, typer.Option(help="Cubic model grid")] = 8,
    pooling: Annotated[
        list[str],
        typer.Option(
            help="Encoder pooling(s) to train (repeat): mean-max, mean-max-cov (adds the last layer's "
            "channel second moments; model names get -cov) or aligned (input brought to its best frame against "
            "a learnt linear basis; -aligned)"
        ),
    ] = ["mean-max"],  # noqa: B006
    epochs: Annotated[int, typer.Option()] = 40,
    per_material: Annotated[int, typer.Option(help="Random training states per material")] = 64,
    eval_per_material: Annotated[
        int, typer.Option(help="Random states per material scored (train sample: at most 512 in all)")
    ] = 64,
    batch_size: Annotated[int, typer.Option()] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam, cosine decay)")] = 2e-3,
    time_budget: Annotated[
        float | None,
        typer.Option(help="Seconds per model: the cosine schedule ends within it (fewer epochs if needed)"),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the results as JSON here (also after each model)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every epoch")] = False,
) -> None:
    """Train the state VAE on train-split materials; print R² (up to shifts/permutations) per model beside PCA."""
    _one_thread()
    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    from ..wavefunction.study import vae_study

    files = _npz_files(exports)
    res = vae_study(
        files,
        out,
        channels=channels,
        latent=latent,
        grid=grid,
        epochs=epochs,
        per_material=per_material,
        eval_per_material=eval_per_material,
        batch_size=batch_size,
        lr=lr,
        time_budget_s=time_budget,
        report=report,
        poolings=pooling,
    )
    sets = [k for k in ("train", "validation", "test") if k in res["n_eval_states"]]
    for k, v in res["pca"].items():
        typer.echo(f"PCA k={k:>3}  " + "  ".join(f"{s} {v[s]['r2_aligned']:.3f}" for s in sets))
    for m in res["models"]:
        typer.echo(
            f"VAE {m['name']:<14} params {m['n_parameters']:>7}  "
            + "  ".join(f"{s} {m[s]['r2_aligned']:.3f}" for s in sets)
            + f"  {m['train_seconds']:.0f} s ({m['epochs_run']} epochs)"
        )
    typer.echo(
        f"selected on validation: {res['selected']}"
        if res["selected"] is not None
        else "no validation materials among the exports: no model selected"
    )


@wf_app.command("downstream")
def downstream(
    exports: Annotated[
        list[Path], typer.Argument(help="Wavefunction export files (.npz) or folders of them")
    ],
    gw: Annotated[
        list[Path],
        typer.Option(help="G0W0 records or folders of them (repeat; a later record of a material wins)"),
    ] = [Path("gw")],  # noqa: B006
    vae: Annotated[Path, typer.Option(help="A VAE folder written by `train`")] = Path("vae/vae-c8"),
    folds: Annotated[int, typer.Option(help="Cross-validation folds (by material)")] = 10,
    report: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """[ε_DFT, state latent, density latent] → ε_QP − ε_DFT: CV by material beside two baselines, then test."""
    _one_thread()
    from ..wavefunction.study import downstream_study

    missing = [str(p) for p in gw if not p.exists()]
    if missing:
        raise typer.BadParameter(f"no such G0W0 record or folder: {', '.join(missing)}")
    records = [f for p in gw for f in (sorted(p.glob("*.json.gz")) if p.is_dir() else [p])]
    res = downstream_study(_npz_files(exports), records, vae, n_folds=folds)
    cv = res["cv"]
    typer.echo(f"{cv['n_materials']} materials, {cv['n_states']} states, {cv['n_folds']} folds by material")
    for k in ("model", "mean", "scissor"):
        typer.echo(
            f"  {k:<8} MAE {cv[k]['mae_pooled']:.3f} eV (folds {cv[k]['mae_fold_mean']:.3f} ± {cv[k]['mae_fold_std']:.3f})"
        )
    typer.echo(f"  eps-only MAE {res['cv_ablation_eps_only']['mae_pooled']:.3f} eV")
    if "k_interpolation" in res:
        ki = res["k_interpolation"]
        typer.echo(
            f"k-interpolation (fit on Γ, {ki['n_train_states']} states; {ki['n_test_states']} states at other k): "
            + "  ".join(f"{k} {ki[k]['mae']:.3f}" for k in ("model", "mean", "scissor"))
            + " eV"
        )
    if "test" in res:
        t = res["test"]
        typer.echo(
            f"test {res['test_materials']}: model {t['model_mae']:.3f}  mean {t['mean_mae']:.3f}  scissor {t['scissor_mae']:.3f} eV"
        )
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(res, indent=1) + "\n")


def _npz_files(items: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in items:
        files.extend(sorted(p.glob("*.npz")) if p.is_dir() else [p])
    if not files:
        raise typer.BadParameter("no .npz files among the inputs")
    return files
