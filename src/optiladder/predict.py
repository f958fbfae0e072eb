"""Predict optical spectra of crystals with the pretrained OptiMate models: load once, predict batches.

>>> from optiladder.predict import Predictor
>>> p = Predictor.from_pretrained()                       # ipa, rpa and sc models, CPU
>>> [res] = p.predict(["examples/SiC.cif"])
>>> res.spectra["rpa"].optics()["alpha_cm"]                # α(ω) in cm⁻¹ on the 0–20 eV grid
>>> res.verdict()                                           # is IPA good enough for SiC?

Inputs: file paths (CIF, POSCAR, extended XYZ, any ASE format, pymatgen JSON), pymatgen ``Structure``, ASE
``Atoms`` or pasted text (:func:`parse_text`). Each result holds ``Spectrum`` objects (trace of Im ε on the
2001-point model grid 0–20 eV; Re ε by Kramers–Kronig; n, k, α, R, loss via ``Spectrum.optics()``) and, with the
``sc`` model, the predicted SC[RPA; IPA] with the verdict "IPA is good enough" when SC ≥
:data:`IPA_GOOD_ENOUGH_SC`.

A bad input never stops a batch: its result carries a one-line ``"<name>: <problem>"`` error instead.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from .spectra import MODEL_GRID, Spectrum, kk_real_from_imag
from .structures import DEFAULT_MAX_ATOMS, StructureError

log = logging.getLogger(__name__)

#: Predicted SC[RPA; IPA] at or above which the IPA spectrum is "good enough" for a material.
#: 0.9 is the median SC[RPA_ML; RPA_DFT] the published OptiMate reaches with all 4,610 training spectra
#: (Grunert et al. 2025, Fig. 3): when IPA is that close to RPA, the difference local-field effects make is
#: no larger than the typical error of the best RPA model, so an IPA calculation (or prediction) suffices.
#: Below it the local-field effects matter and RPA should be used. (In our GPAW dataset only ~3 % of
#: materials reach it; the median SC[RPA; IPA] is ~0.71, as the paper's 0.69.)
IPA_GOOD_ENOUGH_SC = 0.9

#: Gaussian smoothing (standard deviation, eV) applied to predicted Im ε. The spectra the models learn carry a
#: 0.3 eV broadening, so nothing real in them is narrower than that; the spectrum head predicts every grid
#: point separately and leaves point-to-point noise, which the smoothing removes (and with it the noise it
#: would put into α and R at high energy). It changes the test-split median SC by < 0.01.
SMOOTH_EV = 0.1

#: Predicted Im ε (0–20 eV) is continued beyond 20 eV as (20 eV/ω)³ for Kramers–Kronig
#: (see :func:`optiladder.spectra.kk_real_from_imag`): no spike at 20 eV, and ε∞ within ~0.6 % of GPAW's.
KK_TAIL = 3.0

LevelChoice = Literal["rpa", "ipa", "both"]
LEVEL_CHOICES: tuple[str, ...] = get_args(LevelChoice)
#: File name patterns picked from a directory given as input.
STRUCTURE_PATTERNS: tuple[str, ...] = (
    "*.cif",
    "*.CIF",
    "POSCAR*",
    "CONTCAR*",
    "*.vasp",
    "*.poscar",
    "*.POSCAR",
    "*.extxyz",
    "*.xyz",
    "*.json",
    "*.json.gz",
)


def levels_of(choice: str) -> tuple[str, ...]:
    """``"rpa"`` → ``("rpa",)``, ``"ipa"`` → ``("ipa",)``, ``"both"`` → ``("ipa", "rpa")``."""
    if choice not in LEVEL_CHOICES:
        raise ValueError(f"level must be one of {LEVEL_CHOICES}, not {choice!r}")
    return ("ipa", "rpa") if choice == "both" else (choice,)


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _sniff_format(text: str, filename: str | None) -> str:
    name = (filename or "").lower()
    base = Path(name).name
    if name.endswith(".cif") or "_cell_length_a" in text or text.lstrip().startswith("data_"):
        return "cif"
    if (
        base.startswith(("poscar", "contcar"))
        or name.endswith((".vasp", ".poscar"))
        or (not name or "." not in base)
    ):
        return "poscar"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    return "poscar"


def parse_text(text: str, filename: str | None = None, *, max_atoms: int = DEFAULT_MAX_ATOMS):
    """A validated pymatgen ``Structure`` from pasted or uploaded CIF, POSCAR or extended-XYZ text.

    The format is taken from ``filename`` (``.cif``, ``POSCAR*``/``CONTCAR*``/``.vasp``, ``.xyz``/``.extxyz``)
    or sniffed from the text (a CIF has ``data_`` and ``_cell_length_a``; anything else is read as POSCAR).
    Raises :class:`~optiladder.structures.StructureError` (``"<name>: <problem>"``, one line).
    """
    from .structures import validate

    name = filename or "input"
    if not text or not text.strip():
        raise StructureError(name, "empty input")
    fmt = _sniff_format(text, filename)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fmt == "extxyz":
                import io

                from ase.io import read

                from .structures import from_any

                structure = from_any(read(io.StringIO(text), format="extxyz"), name=name)
            else:
                from pymatgen.core import Structure

                structure = Structure.from_str(text, fmt=fmt)
        except StructureError:
            raise
        except Exception as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise StructureError(name, f"unreadable {fmt.upper()} ({detail})") from None
    return validate(structure, name, max_atoms=max_atoms, check_setups=False)


def read_structure(source: Any, name: str | None = None, *, max_atoms: int = DEFAULT_MAX_ATOMS):
    """A validated pymatgen ``Structure`` from a path, pymatgen ``Structure``/dict or ASE ``Atoms``.

    Checks (one-line :class:`~optiladder.structures.StructureError` each): readable, 3-D periodic, ordered,
    no overlapping atoms, at most ``max_atoms`` atoms. Elements are checked when the graph is built (the
    featurizer knows main-group elements of periods 1–5).
    """
    from .structures import load

    return load(source, name=name, max_atoms=max_atoms, check_setups=False)


def source_name(source: Any, index: int = 0) -> str:
    """A label for an input: the path, the ASE/pymatgen formula, or ``input-<index>``."""
    if isinstance(source, (str, Path)):
        return str(source)
    for attr in ("formula", "get_chemical_formula"):
        f = getattr(source, attr, None)
        if f is not None:
            try:
                return str(f() if callable(f) else f).replace(" ", "")
            except Exception:  # pragma: no cover - exotic objects
                break
    return f"input-{index}"


def expand_inputs(items: Iterable[str | Path]) -> list[str]:
    """Paths as given, with each directory replaced by its structure files (sorted, not recursive).

    A directory with no structure file is kept as is, so that reading it reports a one-line error.
    """
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted({q for pat in STRUCTURE_PATTERNS for q in p.glob(pat) if q.is_file()})
            out.extend(str(q) for q in found) if found else out.append(str(p))
        else:
            out.append(str(item))
    return out


# --------------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------------
@dataclass
class GraphBatch:
    """Several crystal graphs joined into one disconnected graph (what ``OptiMate.forward`` reads).

    ``x`` ``[n_nodes, 13]``, ``edge_index`` ``[2, n_edges]`` (offset per graph), ``edge_attr``
    ``[n_edges, 51]``, ``batch`` ``[n_nodes]`` (graph index per node), ``num_graphs``. Built with two NumPy
    concatenations, ~10× faster than ``torch_geometric.data.Batch.from_data_list`` for small crystals.
    """

    x: Any
    edge_index: Any
    edge_attr: Any
    batch: Any
    num_graphs: int

    @classmethod
    def from_graphs(cls, graphs: Sequence[Any], device: str = "cpu") -> GraphBatch:
        import torch

        n_nodes = np.array([g.num_nodes for g in graphs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_nodes)[:-1]])
        x = np.concatenate([g.x for g in graphs])
        ei = np.concatenate([g.edge_index + off for g, off in zip(graphs, offsets, strict=True)], axis=1)
        ea = np.concatenate([g.edge_attr for g in graphs])
        b = np.repeat(np.arange(len(graphs), dtype=np.int64), n_nodes)
        return cls(
            x=torch.from_numpy(x).to(device),
            edge_index=torch.from_numpy(ei).to(device),
            edge_attr=torch.from_numpy(ea).to(device),
            batch=torch.from_numpy(b).to(device),
            num_graphs=len(graphs),
        )


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """The prediction for one input.

    ``spectra``: level (``"ipa"``/``"rpa"``) → :class:`~optiladder.spectra.Spectrum` with the trace of Im ε and
    of Re ε (Kramers–Kronig) on the model grid (eV). ``sc``: predicted SC[RPA; IPA] (None without the ``sc``
    model). ``error``: one line ``"<name>: <problem>"`` if the input failed (then ``spectra`` is empty).
    ``warnings``: one line each where the crystal lies outside the models' training domain
    (:func:`optiladder.domain.static_warnings`); the verdict then says it is uncertain.
    """

    name: str
    formula: str | None = None
    nsites: int | None = None
    spectra: dict[str, Spectrum] = field(default_factory=dict)
    sc: float | None = None
    threshold: float = IPA_GOOD_ENOUGH_SC
    error: str | None = None
    structure: Any = None
    embedding: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ipa_good_enough(self) -> bool | None:
        """``True`` if the predicted SC[RPA; IPA] ≥ :attr:`threshold` (None without an SC prediction)."""
        return None if self.sc is None else bool(self.sc >= self.threshold)

    def verdict(self) -> str:
        """One sentence: is the IPA spectrum good enough for this material?"""
        if self.error:
            return self.error
        if self.sc is None:
            return "no verdict (the sc model is not loaded)"
        caveat = (
            f"; UNCERTAIN: outside the training domain ({len(self.warnings)} warning(s))"
            if self.warnings
            else ""
        )
        if self.ipa_good_enough:
            return (
                f"IPA is good enough: predicted SC[RPA;IPA] = {self.sc:.3f} >= {self.threshold:.2f} "
                f"(local-field effects change the spectrum little){caveat}"
            )
        return (
            f"IPA is not good enough: predicted SC[RPA;IPA] = {self.sc:.3f} < {self.threshold:.2f} "
            f"(local-field effects matter; use RPA){caveat}"
        )

    def to_dict(self, *, optics: bool = True, stride: int = 1, digits: int = 5) -> dict:
        """JSON-able dict: name, formula, verdict and per level ``omega_eV``, ``eps_im``, ``eps_re`` and (with
        ``optics``) ``n``, ``k``, ``alpha_cm`` (cm⁻¹), ``R``, ``loss``; every ``stride``-th grid point, values
        rounded to ``digits`` significant digits."""
        out: dict[str, Any] = {
            "name": self.name,
            "ok": self.ok,
            "error": self.error,
            "formula": self.formula,
            "nsites": self.nsites,
            "sc_rpa_ipa": None if self.sc is None else round(float(self.sc), 4),
            "threshold": self.threshold,
            "ipa_good_enough": self.ipa_good_enough,
            "verdict": self.verdict(),
            "in_domain": self.ok and not self.warnings,
            "warnings": list(self.warnings),
            "spectra": {},
        }
        for lv, sp in self.spectra.items():
            table = (
                sp.table()
                if optics
                else {"omega_eV": sp.omega, "eps_im": sp.trace_im(), "eps_re": sp.trace_re()}
            )
            out["spectra"][lv] = {k: _rounded(v[::stride], digits) for k, v in table.items()}
            out["spectra"][lv]["eps_inf"] = round(sp.eps_inf, 4)
        return out


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    """Values rounded to ``digits`` significant digits, vectorised.

    ``n / 10^k`` and ``n · 10^k`` with an exact power of ten give the double nearest to the decimal value, so
    JSON holds short numbers such as ``1.2345`` (5× smaller than full ``repr``).
    """
    x = np.asarray(values, float)
    out = np.zeros_like(x)
    nz = np.isfinite(x) & (x != 0)
    mag = np.floor(np.log10(np.abs(x[nz]))).astype(int)
    shift = digits - 1 - mag  # decimals to keep
    v = x[nz]
    pos = shift >= 0
    r = np.empty_like(v)
    p10 = 10.0 ** np.abs(shift)
    r[pos] = np.round(v[pos] * p10[pos]) / p10[pos]
    r[~pos] = np.round(v[~pos] / p10[~pos]) * p10[~pos]
    out[nz] = r
    out[~np.isfinite(x)] = x[~np.isfinite(x)]
    return out.tolist()


def prepare_input(
    source: Any,
    label: str,
    featurizers: dict[str, Any],
    domain: Any = None,
    *,
    max_atoms: int = DEFAULT_MAX_ATOMS,
    validated: bool = False,
    text: bool = False,
    threshold: float = IPA_GOOD_ENOUGH_SC,
    timings: dict[str, float] | None = None,
) -> tuple[Prediction, dict[str, Any] | None]:
    """Read, validate and build the graphs of one input: ``(Prediction without spectra, graphs or None)``.

    ``source``: what :meth:`Predictor.predict` takes, or CIF/POSCAR text with ``text=True`` (:func:`parse_text`,
    ``label`` as its file name); ``validated``: a checked ``Structure``. ``featurizers``: hash → featurizer;
    ``domain``: the :class:`~optiladder.domain.TrainingDomain` for the warnings; ``timings``: ``"read"`` and
    ``"graph"`` seconds are added to it. Per-input isolation: what this input's own steps raise for a bad input
    (:class:`StructureError`, ``GraphError`` and other ``ValueError``, ``ArithmeticError``, ``MemoryError``)
    becomes the result's one-line ``error``; anything else is a bug and propagates. Needs no torch (the
    service runs it in worker processes).
    """
    from .domain import static_warnings
    from .graphs import GraphError, structure_graph

    res = Prediction(name=label, threshold=threshold)
    try:
        t0 = time.perf_counter()
        if text:
            s = parse_text(source, label, max_atoms=max_atoms)
        else:
            s = source if validated else read_structure(source, name=label, max_atoms=max_atoms)
        t1 = time.perf_counter()
        try:
            graphs = {h: structure_graph(s, f) for h, f in featurizers.items()}
        except GraphError as exc:
            raise StructureError(label, str(exc)) from None
        t2 = time.perf_counter()
        with warnings.catch_warnings():  # pymatgen warns about noble gases' electronegativity
            warnings.simplefilter("ignore", UserWarning)
            res.formula = s.composition.reduced_formula
        res.warnings = static_warnings(s, domain)
    except StructureError as exc:
        res.error = str(exc)
        return res, None
    except (ValueError, ArithmeticError, MemoryError) as exc:
        log.info("%s: %s", label, exc, exc_info=True)
        detail = " ".join(str(exc).split())[:200]
        res.error = f"{label}: {type(exc).__name__} while reading or building its graph ({detail})"
        return res, None
    if timings is not None:
        timings["read"] = timings.get("read", 0.0) + t1 - t0
        timings["graph"] = timings.get("graph", 0.0) + t2 - t1
    res.structure, res.nsites = s, len(s)
    return res, graphs


# --------------------------------------------------------------------------------------------------
# predictor
# --------------------------------------------------------------------------------------------------
class Predictor:
    """Pretrained models loaded once; predicts spectra and the IPA verdict for batches of structures.

    ``models``: name (``"ipa"``, ``"rpa"``, ``"sc"``) → :class:`~optiladder.pretrained.LoadedModel`; at least one
    spectrum model. ``batch_size``: graphs per forward pass. ``threshold``: SC[RPA; IPA] at which IPA counts as
    good enough (:data:`IPA_GOOD_ENOUGH_SC`). ``max_atoms``: larger cells are refused. ``smooth_ev``: Gaussian
    smoothing of predicted Im ε in eV (:data:`SMOOTH_EV`; 0 = raw network output).
    """

    def __init__(
        self,
        models: dict[str, Any],
        *,
        batch_size: int = 64,
        threshold: float = IPA_GOOD_ENOUGH_SC,
        max_atoms: int = DEFAULT_MAX_ATOMS,
        smooth_ev: float = SMOOTH_EV,
        device: str = "cpu",
    ):
        if not any(k in models for k in ("ipa", "rpa")):
            raise ValueError("a Predictor needs at least one spectrum model (ipa or rpa)")
        self.models = dict(models)
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.max_atoms = int(max_atoms)
        self.smooth_ev = float(smooth_ev)
        self.device = device
        feats = {m.featurizer.hash(): m.featurizer for m in self.models.values()}
        #: featurizer hash → featurizer; graphs are built once per distinct featurizer
        self.featurizers = feats
        self._model_feat = {name: m.featurizer.hash() for name, m in self.models.items()}
        self.grid = MODEL_GRID
        self.timings: dict[str, float] = {"read": 0.0, "graph": 0.0, "forward": 0.0, "post": 0.0}
        self._domain: Any = None

    @classmethod
    def from_pretrained(
        cls,
        levels: Sequence[str] = ("ipa", "rpa"),
        *,
        sc: bool = True,
        root: str | Path | None = None,
        device: str = "cpu",
        **kwargs: Any,
    ) -> Predictor:
        """Load the shipped models of ``levels`` (and ``sc``); weights are checksum-verified."""
        from .pretrained import load_model

        names = [lv for lv in ("ipa", "rpa") if lv in levels] + (["sc"] if sc else [])
        return cls({n: load_model(n, root=root, device=device) for n in names}, device=device, **kwargs)

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(lv for lv in ("ipa", "rpa") if lv in self.models)

    def cards(self) -> dict[str, dict]:
        return {name: m.card for name, m in self.models.items()}

    @property
    def domain(self):
        """The models' :class:`~optiladder.domain.TrainingDomain` (from the cards' training ids; None if unknown)."""
        if self._domain is None:
            from .domain import TrainingDomain

            self._domain = TrainingDomain.from_cards(
                getattr(m, "card", None) or {} for m in self.models.values()
            )
            self._domain = self._domain or False
        return self._domain or None

    # ---- stages (public so that benchmarks can time them) ------------------------------------------
    def read(self, source: Any, name: str | None = None):
        """Stage 1: a validated pymatgen ``Structure`` (raises ``StructureError``)."""
        return read_structure(source, name=name, max_atoms=self.max_atoms)

    def graph(self, structure: Any, name: str = "structure") -> dict[str, Any]:
        """Stage 2: featurizer hash → :class:`optiladder.graphs.Graph` of one structure (raises ``StructureError``)."""
        from .graphs import GraphError, structure_graph

        try:
            return {h: structure_graph(structure, f) for h, f in self.featurizers.items()}
        except GraphError as exc:
            raise StructureError(name, str(exc)) from None

    def forward(
        self,
        graphs: Sequence[dict[str, Any]],
        *,
        embed: bool = False,
        models: Iterable[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Stage 3: model name → output ``[n, 2001]`` (spectra) or ``[n]`` (sc) for ``models`` (default: all
        loaded); with ``embed`` also ``"embedding"`` ``[n, 384]``, the sc model's (else the first model's)
        pooled latent vector."""
        import torch

        out: dict[str, np.ndarray] = {}
        batches: dict[str, GraphBatch] = {}
        embed_model = "sc" if "sc" in self.models else next(iter(self.models))
        wanted = set(self.models if models is None else models) | ({embed_model} if embed else set())
        with torch.inference_mode():
            for name, m in self.models.items():
                if name not in wanted:
                    continue
                h = self._model_feat[name]
                if h not in batches:
                    batches[h] = GraphBatch.from_graphs([g[h] for g in graphs], self.device)
                if embed and name == embed_model:
                    z = m.model.embed(batches[h])
                    y = m.model.head(z)
                    out["embedding"] = z.cpu().numpy()
                else:
                    y = m.model(batches[h])
                y = y.cpu().numpy().astype(np.float64)
                out[name] = y[:, 0] if y.shape[1] == 1 else y
        return out

    # ---- whole pipeline -------------------------------------------------------------------------
    def predict(
        self,
        sources: Iterable[Any],
        names: Sequence[str] | None = None,
        *,
        levels: Sequence[str] | None = None,
        embed: bool = False,
        progress: Callable[[int], None] | None = None,
        validated: bool = False,
    ) -> list[Prediction]:
        """Predict every input; a bad input gets an error result and the batch goes on.

        ``sources``: paths, pymatgen ``Structure``, ASE ``Atoms`` or pymatgen dicts. ``names``: labels (default:
        the path or formula). ``levels``: spectra to return (default: every loaded level). ``progress``:
        called with the number of inputs finished after each batch. ``validated``: the sources are pymatgen
        ``Structure`` objects already checked by :func:`parse_text` or :func:`read_structure` (skips reading).
        Returns one :class:`Prediction` per input, in order.
        """
        sources = list(sources)
        labels = list(names) if names is not None else [source_name(s, i) for i, s in enumerate(sources)]
        want = tuple(levels) if levels is not None else self.levels
        missing = [lv for lv in want if lv not in self.models]
        if missing:
            raise ValueError(f"level(s) {missing} requested but their model is not loaded")
        results: list[Prediction] = []
        for start in range(0, len(sources), self.batch_size):
            end = start + self.batch_size
            chunk = list(zip(sources[start:end], labels[start:end], strict=True))
            results.extend(self._predict_chunk(chunk, want, embed, validated))
            if progress is not None:
                progress(len(chunk))
        return results

    def predict_one(self, source: Any, name: str | None = None, **kwargs: Any) -> Prediction:
        """:meth:`predict` for one input."""
        return self.predict([source], None if name is None else [name], **kwargs)[0]

    def predict_text(self, text: str, filename: str | None = None, **kwargs: Any) -> Prediction:
        """Predict a structure given as CIF/POSCAR text (see :func:`parse_text`); errors as results."""
        name = filename or "input"
        t0 = time.perf_counter()
        try:
            structure = parse_text(text, filename, max_atoms=self.max_atoms)
        except StructureError as exc:
            return Prediction(name=name, error=str(exc), threshold=self.threshold)
        self.timings["read"] += time.perf_counter() - t0
        return self.predict([structure], [name], validated=True, **kwargs)[0]

    def _smooth(self, im: np.ndarray) -> np.ndarray:
        """Gaussian smoothing of ``[n, n_grid]`` spectra with σ = :attr:`smooth_ev` (eV)."""
        if self.smooth_ev <= 0:
            return im
        from scipy.ndimage import gaussian_filter1d

        step = float(self.grid[1] - self.grid[0])
        return gaussian_filter1d(im, self.smooth_ev / step, axis=-1, mode="nearest")

    def prepare(
        self, source: Any, label: str, *, validated: bool = False, text: bool = False
    ) -> tuple[Prediction, dict[str, Any] | None]:
        """:func:`prepare_input` with this predictor's featurizers, domain, atom limit and threshold (timed)."""
        return prepare_input(
            source,
            label,
            self.featurizers,
            self.domain,
            max_atoms=self.max_atoms,
            validated=validated,
            text=text,
            threshold=self.threshold,
            timings=self.timings,
        )

    def _predict_chunk(
        self, chunk, want: tuple[str, ...], embed: bool, validated: bool = False
    ) -> list[Prediction]:
        results: list[Prediction] = []
        ok: list[tuple[int, dict[str, Any]]] = []
        for source, label in chunk:
            res, g = self.prepare(source, label, validated=validated)
            results.append(res)
            if g is not None:
                ok.append((len(results) - 1, g))
        return self._finish(results, ok, want, embed)

    def predict_prepared(
        self, prepared: Sequence[tuple[Prediction, dict[str, Any]]], *, embed: bool = False
    ) -> list[Prediction]:
        """Forward pass and spectra for inputs prepared by :func:`prepare_input` (e.g. in a worker process):
        ``(Prediction, graphs)`` pairs; fills and returns the predictions, in order."""
        results = [res for res, _ in prepared]
        return self._finish(results, [(i, g) for i, (_, g) in enumerate(prepared)], self.levels, embed)

    def _finish(
        self,
        results: list[Prediction],
        ok: list[tuple[int, dict[str, Any]]],
        want: tuple[str, ...],
        embed: bool,
    ) -> list[Prediction]:
        if not ok:
            return results
        t0 = time.perf_counter()
        needed = [*want, *(["sc"] if "sc" in self.models else [])]
        out = self.forward([g for _, g in ok], embed=embed, models=needed)
        t1 = time.perf_counter()
        for lv in want:
            im = self._smooth(out[lv])
            im = np.clip(im, 0.0, None)  # Im ε ≥ 0 (the leaky-ReLU head lets tiny negatives through)
            re = kk_real_from_imag(self.grid, im, tail=KK_TAIL)
            card = self.models[lv].card
            for row, (idx, _) in enumerate(ok):
                results[idx].spectra[lv] = Spectrum(
                    omega=self.grid,
                    im={"trace": im[row]},
                    re={"trace": re[row]},
                    level=lv,
                    provenance={
                        "kind": "prediction",
                        "model": card.get("full_name", lv),
                        "model_date": card.get("created"),
                        "smooth_ev": self.smooth_ev,
                        "input": results[idx].name,
                    },
                )
        for row, (idx, _) in enumerate(ok):
            if "sc" in out:
                results[idx].sc = float(out["sc"][row])
            if "embedding" in out:
                results[idx].embedding = out["embedding"][row]
        self.timings["forward"] += t1 - t0
        self.timings["post"] += time.perf_counter() - t1
        return results


def plot_prediction(result: Prediction, path: str | Path, emax: float = 20.0) -> Path:
    """PNG with three panels: Im ε, Re ε and α (cm⁻¹) of every predicted level, verdict in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    styles = {"ipa": ("--", "#d97706"), "rpa": ("-", "#2457c5")}
    for lv, sp in result.spectra.items():
        ls, color = styles.get(lv, ("-", "k"))
        m = sp.omega <= emax
        label = f"{lv.upper()} (ε∞ = {sp.eps_inf:.2f})"
        axes[0].plot(sp.omega[m], sp.trace_im()[m], ls, color=color, label=label)
        axes[1].plot(sp.omega[m], sp.trace_re()[m], ls, color=color, label=lv.upper())
        axes[2].plot(sp.omega[m], sp.optics()["alpha_cm"][m], ls, color=color, label=lv.upper())
    for ax, ylabel in zip(axes, ("Im ε (trace/3)", "Re ε (Kramers–Kronig)", "α (cm⁻¹)"), strict=True):
        ax.set_xlabel("photon energy (eV)")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, emax)
        ax.legend(frameon=False)
    verdict = result.verdict()
    fig.suptitle(f"{result.formula}  ({Path(result.name).name})  —  {verdict.split(':')[0]}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = [
    "IPA_GOOD_ENOUGH_SC",
    "SMOOTH_EV",
    "LEVEL_CHOICES",
    "GraphBatch",
    "LevelChoice",
    "Prediction",
    "Predictor",
    "expand_inputs",
    "levels_of",
    "parse_text",
    "plot_prediction",
    "prepare_input",
    "read_structure",
]
