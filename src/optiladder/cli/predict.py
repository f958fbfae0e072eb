"""``optiladder predict``: spectra of crystals from the pretrained models, with the "is IPA good enough" verdict."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ._app import app

log = logging.getLogger(__name__)

OutFormat = Literal["csv", "json"]
#: inputs above this number get a progress bar (on a terminal)
PROGRESS_MIN = 20


@app.command()
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Structure files (CIF, POSCAR, extxyz, pymatgen JSON) or folders of them"),
    ],
    level: Annotated[
        str, typer.Option(help="Spectra to predict: rpa, ipa or both", case_sensitive=False)
    ] = "both",
    fmt: Annotated[str, typer.Option("--format", help="Format of --out: csv or json")] = "csv",
    out: Annotated[
        Path | None,
        typer.Option(help="Write the spectra here ('-' = stdout); without it only the verdicts are printed"),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="PNG of Im ε, Re ε and α (several inputs: one file each, <stem>-<name>.png)"),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="SC[RPA;IPA] at or above which IPA counts as good enough")
    ] = 0.9,
    max_atoms: Annotated[int, typer.Option(help="Refuse cells with more atoms")] = 64,
    batch_size: Annotated[int, typer.Option(help="Structures per forward pass")] = 64,
    threads: Annotated[int, typer.Option(help="torch threads")] = 1,
    scissor: Annotated[
        str | None,
        typer.Option(
            help="gw: shift the predicted spectra by the QP direct-gap correction of the gap model (G0W0 labels of"
            " training materials; gap from the predicted onset), Re ε by Kramers–Kronig; prints Δ ± σ and"
            " whether the crystal lies outside the GW model's domain"
        ),
    ] = None,
) -> None:
    """Predict IPA/RPA spectra and n, k, α, R, loss; print one verdict line per input.

    Bad inputs get a one-line error on stderr and the batch goes on; the exit code is 1 if any input failed.
    A crystal outside the models' training domain gets its verdict marked UNCERTAIN and one ``warning:`` line
    per reason on stderr (exit code unchanged).
    """
    from ..predict import LEVEL_CHOICES, expand_inputs, levels_of

    level = level.lower()
    if level not in LEVEL_CHOICES:
        raise typer.BadParameter(f"must be one of {', '.join(LEVEL_CHOICES)}", param_hint="--level")
    if fmt not in ("csv", "json"):
        raise typer.BadParameter("must be csv or json", param_hint="--format")
    if scissor not in (None, "gw"):
        raise typer.BadParameter(f"unknown scissor {scissor!r}; known: gw", param_hint="--scissor")
    import torch

    from ..predict import Predictor
    from ..pretrained import PretrainedError

    torch.set_num_threads(max(1, threads))
    files = expand_inputs(inputs)
    try:
        predictor = Predictor.from_pretrained(
            levels_of(level), sc=True, threshold=threshold, max_atoms=max_atoms, batch_size=batch_size
        )
    except PretrainedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    to_stdout = out is not None and str(out) == "-"
    say = (lambda s: typer.echo(s, err=True)) if to_stdout else typer.echo
    if len(files) >= PROGRESS_MIN and sys.stderr.isatty():
        with typer.progressbar(length=len(files), label="predicting", file=sys.stderr) as bar:
            results = predictor.predict(files, progress=bar.update)
    else:
        results = predictor.predict(files)

    corrections = _apply_scissor(results) if scissor == "gw" else {}
    failed = 0
    for r in results:
        if r.ok:
            say(f"{r.name}  {r.formula:<10} {r.nsites:>3} atoms  {r.verdict()}")
            for w in r.warnings:
                typer.echo(f"warning: {r.name}: {w}", err=True)
            if id(r) in corrections:
                c = corrections[id(r)]
                say(f"{r.name}  {c.line()}")
                for w in c.warnings:
                    typer.echo(f"warning: {r.name}: GW scissor outside the GW model's domain: {w}", err=True)
        else:
            failed += 1
            typer.echo(f"error: {r.error}", err=True)
    good = [r for r in results if r.ok]
    if out is not None and good:
        text = _to_json(good, corrections) if fmt == "json" else _to_csv(good)
        if to_stdout:
            sys.stdout.write(text)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            say(f"spectra of {len(good)} material(s) -> {out}")
    if plot is not None and good:
        from ..predict import plot_prediction

        for r in good:
            path = (
                plot
                if len(good) == 1
                else plot.with_name(f"{plot.stem}-{_slug(r.name)}{plot.suffix or '.png'}")
            )
            plot_prediction(r, path)
            say(f"plot -> {path}")
    if failed:
        typer.echo(f"{failed} of {len(results)} inputs failed", err=True)
        raise typer.Exit(1)


def _slug(name: str) -> str:
    stem = Path(name).name
    for suffix in (".json.gz", ".cif", ".vasp", ".poscar", ".POSCAR", ".xyz", ".extxyz", ".json"):
        stem = stem.removesuffix(suffix)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def _apply_scissor(results) -> dict:
    """``--scissor gw``: shift each good result's spectra (and ensemble spread) in place by the gap model's Δ;
    returns ``{id(result): Correction}``."""
    from ..spectra import scissor_imag
    from ..wavefunction.gapmodel import predicted_correction, scissored

    out = {}
    for r in results:
        if not r.ok or not r.spectra:
            continue
        c = predicted_correction(r.spectra, r.structure)
        r.spectra = scissored(r.spectra, c)
        r.spread = {lv: scissor_imag(r.spectra[lv].omega, v, c.delta) for lv, v in r.spread.items()}
        out[id(r)] = c
    return out


def _to_json(results, corrections: dict | None = None) -> str:
    import json

    rows = []
    for r in results:
        d = r.to_dict()
        if corrections and id(r) in corrections:
            d["scissor"] = corrections[id(r)].as_dict()
        rows.append(d)
    return json.dumps(rows, separators=(",", ":")) + "\n"


def _to_csv(results) -> str:
    """Long table: one row per material, level and photon energy (eV); ``in_domain``: no domain warning."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["omega_eV", "eps_im", "eps_re", "n", "k", "alpha_cm", "R", "loss"]
    w.writerow(["name", "formula", "level", "sc_rpa_ipa", "ipa_good_enough", "in_domain", *cols])
    for r in results:
        d = r.to_dict()
        sc = "" if d["sc_rpa_ipa"] is None else d["sc_rpa_ipa"]
        for lv, table in d["spectra"].items():
            for row in zip(*(table[c] for c in cols), strict=True):
                w.writerow([r.name, r.formula, lv, sc, d["ipa_good_enough"], d["in_domain"], *row])
    return buf.getvalue()
