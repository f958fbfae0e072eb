"""What a model predicts: the one place that names the rungs of the ladder, the ω grid and the target kinds.

A :class:`TargetSpec` is saved with every model (``target.json``) and read by the store, training,
evaluation, the predictor, the CLI and the service, so that nothing downstream knows by convention what a
model's output means:

* ``levels``: rungs of the ladder (:data:`LEVELS`, cheapest first; a new rung such as ``gw`` is added here);
* ``kind``: ``spectrum`` (Im ε on a grid), ``scalar`` (one value per material, e.g. SC[RPA; IPA]) or
  ``tensor`` (Im ε per Cartesian component ``x``, ``y``, ``z`` on a grid);
* ``grid``: the ω grid in eV (:data:`DEFAULT_GRID`: 0–20 eV, 2001 points, the OptiMate paper's);
* ``components``: ``("trace",)`` (isotropic (xx + yy + zz)/3) or ``("x", "y", "z")``;
* ``loss``: the training loss the model owns (``l1`` or ``mse``);
* ``postprocess``: what turns raw network output into the reported prediction (Gaussian smoothing in eV,
  clipping Im ε ≥ 0, the power of the ω⁻ⁿ tail assumed by Kramers–Kronig) — a recorded option, so that the
  cards, the study and the benchmarks compute their metrics the same way.

:func:`record_traces` is "record → Im ε on the model grid", written once (used by ``data.Store``, the
service and the map). Pure NumPy; no torch, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

#: Rungs of Jacob's ladder of optical spectra, cheapest first (the only place level names are written).
LEVELS: tuple[str, ...] = ("ipa", "rpa")
#: Cartesian components of the diagonal of the dielectric tensor, as stored in records.
COMPONENTS: tuple[str, ...] = ("x", "y", "z")
#: The isotropic average (xx + yy + zz)/3.
TRACE = "trace"
KINDS: tuple[str, ...] = ("spectrum", "scalar", "tensor")
QUANTITIES: tuple[str, ...] = ("im_eps", "sc")
LOSSES: tuple[str, ...] = ("l1", "mse")
#: SC[RPA; IPA] at or above which the IPA spectrum is "good enough" for a material. 0.9 is the median
#: SC[RPA_ML; RPA_DFT] the published OptiMate reaches with all 4,610 training spectra (Grunert et al. 2025,
#: Fig. 3): when IPA is that close to RPA, the difference local-field effects make is no larger than the typical
#: error of the best RPA model. (In our GPAW dataset only ~3 % of materials reach it.)
SC_GOOD_ENOUGH = 0.9


class TargetError(ValueError):
    """An invalid target specification (unknown level, kind, loss, components or grid)."""


@dataclass(frozen=True)
class Grid:
    """A uniform photon-energy grid: ``n`` points from ``start`` to ``stop`` eV (inclusive)."""

    start: float = 0.0
    stop: float = 20.0
    n: int = 2001

    def __post_init__(self) -> None:
        if self.n < 2 or not self.stop > self.start or self.start < 0:
            raise TargetError(f"grid {self.start}–{self.stop} eV with {self.n} points is not a valid grid")

    def values(self) -> np.ndarray:
        """The grid points in eV, shape ``[n]`` (a fresh copy)."""
        return _grid_values(float(self.start), float(self.stop), int(self.n)).copy()

    @property
    def step(self) -> float:
        """Spacing in eV."""
        return (self.stop - self.start) / (self.n - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"start": float(self.start), "stop": float(self.stop), "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(float(d["start"]), float(d["stop"]), int(d["n"]))

    @classmethod
    def of(cls, omega: np.ndarray) -> Grid:
        """The :class:`Grid` of a uniform array ``omega`` (eV); raises for a non-uniform one."""
        omega = np.asarray(omega, float)
        g = cls(float(omega[0]), float(omega[-1]), int(omega.size))
        if not np.allclose(g.values(), omega, rtol=0, atol=1e-9):
            raise TargetError("the energy grid is not uniform")
        return g


@lru_cache(maxsize=16)
def _grid_values(start: float, stop: float, n: int) -> np.ndarray:
    return np.linspace(start, stop, n)


#: The model grid of the OptiMate paper: 0–20 eV in 10 meV steps (2001 points).
DEFAULT_GRID = Grid()
#: :data:`DEFAULT_GRID` as an array (eV).
MODEL_GRID: np.ndarray = DEFAULT_GRID.values()


@dataclass(frozen=True)
class PostProcess:
    """Post-processing of raw network output (a recorded option of every target and every metric).

    ``smooth_ev``: standard deviation (eV) of a Gaussian smoothing along ω (0: none). The spectra the models
    learn carry a 0.3 eV broadening, so nothing real in them is narrower than that; the spectrum head predicts
    every grid point separately and leaves point-to-point noise, which a 0.1 eV smoothing removes.
    ``clip_min``: lower bound of the values (Im ε ≥ 0; None: none). ``kk_tail``: Im ε beyond the grid's end
    decays as (ω_max/ω)^kk_tail when Re ε is computed by Kramers–Kronig (None: zero beyond the grid; see
    :func:`optiladder.spectra.kk_real_from_imag`).
    """

    smooth_ev: float = 0.0
    clip_min: float | None = None
    kk_tail: float | None = None

    def apply(self, values: np.ndarray, grid: Grid | None = None, n_components: int = 1) -> np.ndarray:
        """Post-processed copy of ``values`` ``[n, out_dim]`` (``out_dim = n_components · grid.n``)."""
        out = np.asarray(values, dtype=np.float64)
        if self.smooth_ev > 0 and grid is not None:
            from scipy.ndimage import gaussian_filter1d

            shaped = out.reshape(*out.shape[:-1], n_components, grid.n)
            out = gaussian_filter1d(shaped, self.smooth_ev / grid.step, axis=-1, mode="nearest")
            out = out.reshape(values.shape)
        if self.clip_min is not None:
            out = np.clip(out, self.clip_min, None)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostProcess:
        return cls(**d)


#: No post-processing (raw network output).
RAW = PostProcess()
#: The post-processing of predicted Im ε spectra: 0.1 eV smoothing, Im ε ≥ 0, ω⁻³ tail for Kramers–Kronig
#: (with the tail, ε∞ of the 0–20 eV trace is within ~0.6 % of GPAW's).
SPECTRUM_POSTPROCESS = PostProcess(smooth_ev=0.1, clip_min=0.0, kk_tail=3.0)


@dataclass(frozen=True)
class TargetSpec:
    """What one model predicts (see the module docstring); saved as ``target.json`` with every model.

    ``name``: the target's name (``ipa``, ``rpa``, ``sc_rpa_ipa``, …). ``levels``: the rung of a spectrum or
    tensor target, or the two rungs (X, Y) of SC[X; Y] for the ``sc`` quantity.
    """

    name: str
    kind: str
    quantity: str
    levels: tuple[str, ...]
    grid: Grid = DEFAULT_GRID
    components: tuple[str, ...] = (TRACE,)
    loss: str = "l1"
    postprocess: PostProcess = field(default_factory=PostProcess)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "components", tuple(self.components))
        if self.kind not in KINDS:
            raise TargetError(f"target {self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.quantity not in QUANTITIES:
            raise TargetError(
                f"target {self.name}: quantity must be one of {QUANTITIES}, not {self.quantity!r}"
            )
        bad = [lv for lv in self.levels if lv not in LEVELS]
        if bad or not self.levels:
            raise TargetError(f"target {self.name}: unknown level(s) {bad}; known: {', '.join(LEVELS)}")
        if self.loss not in LOSSES:
            raise TargetError(f"target {self.name}: loss must be one of {LOSSES}, not {self.loss!r}")
        want = (
            (TRACE,) if self.kind == "spectrum" else COMPONENTS if self.kind == "tensor" else self.components
        )
        if self.components != want:
            raise TargetError(f"target {self.name}: a {self.kind} target has components {want}")
        if self.quantity == "sc" and (self.kind != "scalar" or len(self.levels) != 2):
            raise TargetError(f"target {self.name}: SC[X; Y] is a scalar of two levels")

    # ---- shape ---------------------------------------------------------------------------------
    @property
    def level(self) -> str:
        """The (first) level: the rung a spectrum model predicts, X of SC[X; Y]."""
        return self.levels[0]

    @property
    def is_spectrum(self) -> bool:
        """True for Im ε on a grid (``spectrum`` or ``tensor``)."""
        return self.kind in ("spectrum", "tensor")

    @property
    def out_dim(self) -> int:
        """Values per material the network outputs: grid points × components, or 1 for a scalar."""
        return self.grid.n * len(self.components) if self.is_spectrum else 1

    def omega(self) -> np.ndarray:
        """The target's ω grid in eV, ``[grid.n]``."""
        return self.grid.values()

    # ---- values --------------------------------------------------------------------------------
    def values(self, arrays: Any) -> np.ndarray:
        """Target values of every material of a ``DatasetArrays``: ``[n, out_dim]`` float32.

        The arrays must hold the target's levels and components on the target's grid (``Store.table(grid=…,
        components=…)``); anything else raises :class:`TargetError` instead of silently mixing grids.
        """
        if Grid.of(arrays.grid) != self.grid:
            raise TargetError(
                f"target {self.name} is on {self.grid.to_dict()}, the data on {Grid.of(arrays.grid).to_dict()}"
            )
        comps = tuple(getattr(arrays, "components", (TRACE,)))
        if self.is_spectrum:
            if comps != self.components:
                raise TargetError(
                    f"target {self.name} needs components {self.components}, the data has {comps}"
                )
            return np.asarray(arrays.spectrum(self.level), dtype=np.float32)
        x, y = (np.asarray(arrays.spectrum(lv), float) for lv in self.levels)
        if comps != (TRACE,):
            raise TargetError(f"target {self.name}: SC is defined on the trace")
        from .spectra import similarity_coefficient

        return similarity_coefficient(x, y, arrays.grid).astype(np.float32)[:, None]

    def finish(self, raw: np.ndarray, postprocess: PostProcess | None = None) -> np.ndarray:
        """Raw network output ``[n, out_dim]`` → the reported prediction (``postprocess`` default: the
        target's own)."""
        post = self.postprocess if postprocess is None else postprocess
        if not self.is_spectrum:
            return post.apply(raw)
        return post.apply(raw, self.grid, len(self.components))

    # ---- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "quantity": self.quantity,
            "levels": list(self.levels),
            "grid": self.grid.to_dict(),
            "components": list(self.components),
            "loss": self.loss,
            "postprocess": self.postprocess.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetSpec:
        try:
            return cls(
                name=str(d["name"]),
                kind=str(d["kind"]),
                quantity=str(d["quantity"]),
                levels=tuple(d["levels"]),
                grid=Grid.from_dict(d["grid"]),
                components=tuple(d["components"]),
                loss=str(d["loss"]),
                postprocess=PostProcess.from_dict(d["postprocess"]),
            )
        except (KeyError, TypeError) as exc:
            raise TargetError(f"not a target specification ({type(exc).__name__}: {exc})") from None

    def hash(self) -> str:
        """sha256 (hex, 16 characters) of the canonical JSON of :meth:`to_dict`."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def on_grid(self, grid: Grid) -> TargetSpec:
        """The same target on another grid."""
        return replace(self, grid=grid)


def spectrum_target(
    level: str,
    *,
    grid: Grid = DEFAULT_GRID,
    tensor: bool = False,
    loss: str = "l1",
    postprocess: PostProcess = SPECTRUM_POSTPROCESS,
) -> TargetSpec:
    """Im ε at ``level`` on ``grid``: the trace (``tensor=False``) or the x, y, z components."""
    return TargetSpec(
        name=level if not tensor else f"{level}_xyz",
        kind="tensor" if tensor else "spectrum",
        quantity="im_eps",
        levels=(level,),
        grid=grid,
        components=COMPONENTS if tensor else (TRACE,),
        loss=loss,
        postprocess=postprocess,
    )


def sc_target(x: str = "rpa", y: str = "ipa", *, grid: Grid = DEFAULT_GRID, loss: str = "l1") -> TargetSpec:
    """The similarity coefficient SC[X; Y] of the traces of two levels (paper eq. 6), one value."""
    return TargetSpec(
        name=f"sc_{x}_{y}", kind="scalar", quantity="sc", levels=(x, y), grid=grid, loss=loss, postprocess=RAW
    )


#: The named targets of the project (a spectrum per level, and SC of each higher rung against the lowest).
TARGETS: dict[str, TargetSpec] = {
    **{lv: spectrum_target(lv) for lv in LEVELS},
    **{f"sc_{lv}_{LEVELS[0]}": sc_target(lv, LEVELS[0]) for lv in LEVELS[1:]},
}


def get_target(target: str | TargetSpec, grid: Grid | None = None) -> TargetSpec:
    """A :class:`TargetSpec` from its name (:data:`TARGETS`) or as given; ``grid`` replaces its grid."""
    if isinstance(target, TargetSpec):
        spec = target
    elif target in TARGETS:
        spec = TARGETS[target]
    else:
        raise TargetError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    return spec if grid is None else spec.on_grid(grid)


def level_choices() -> tuple[str, ...]:
    """Level options of the user interfaces: every level, and ``both`` (= all levels)."""
    return (*LEVELS, "both")


def levels_of(choice: str) -> tuple[str, ...]:
    """A user's level choice → levels: ``"rpa"`` → ``("rpa",)``, ``"both"`` → :data:`LEVELS`."""
    if choice == "both":
        return LEVELS
    if choice not in LEVELS:
        raise TargetError(f"level must be one of {', '.join(level_choices())}, not {choice!r}")
    return (choice,)


# --------------------------------------------------------------------------------------------------
# record → Im ε on the model grid (written once)
# --------------------------------------------------------------------------------------------------
def record_traces(
    rec: dict,
    grid: Grid = DEFAULT_GRID,
    levels: tuple[str, ...] = LEVELS,
    components: tuple[str, ...] = (TRACE,),
) -> dict[str, np.ndarray]:
    """Im ε of a (validated) record on ``grid``, per level: ``[len(components) · grid.n]``.

    The trace is (xx + yy + zz)/3 of the stored components, linearly interpolated onto the grid (zero beyond
    the stored range). ``components=("x", "y", "z")`` concatenates the three instead.
    """
    from .spectra import interpolate

    omega = np.asarray(rec["omega"], float)
    sp = rec["spectra"]
    out = {}
    for lv in levels:
        xyz = np.asarray([sp[f"{lv}_im_{c}"] for c in COMPONENTS], float)
        rows = [xyz.mean(axis=0) if c == TRACE else xyz[COMPONENTS.index(c)] for c in components]
        out[lv] = interpolate(omega, np.asarray(rows), grid.values()).reshape(-1)
    return out
