"""Plots of spectra (matplotlib, Agg backend; imported only when plotting)."""

from __future__ import annotations

from pathlib import Path


def plot_record(rec: dict, path: str | Path, emax: float | None = None) -> Path:
    """PNG of the trace of Im ε (every level) of one record, up to ``emax`` eV (default: the model grid's end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .engine.records import record_spectra
    from .targets import DEFAULT_GRID, LEVELS

    emax = DEFAULT_GRID.stop if emax is None else emax
    sp = record_spectra(rec)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for k, lv in enumerate(LEVELS):
        if lv not in sp:  # an IPA-only record (gpaw-pbe-ipa-lite)
            continue
        style = "--" if k == 0 else "-"
        s = sp[lv]
        m = s.omega <= emax
        ax.plot(s.omega[m], s.trace_im()[m], style, label=f"{lv.upper()}  ε∞ = {s.eps_inf:.2f}")
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("Im ε (trace/3)")
    ax.set_title(f"{rec['formula']}  {rec['mat_id']}  (gap {rec.get('gap_indirect', float('nan')):.2f} eV)")
    ax.set_xlim(0, emax)
    ax.legend(frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
