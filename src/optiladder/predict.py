"""Predict optical spectra of crystals with the pretrained OptiMate models: load once, predict batches.

>>> from optiladder.predict import Predictor
>>> p = Predictor.from_pretrained()                       # ipa, rpa and sc models, CPU
>>> [res] = p.predict(["examples/SiC.cif"])
>>> res.spectra["rpa"].optics()["alpha_cm"]                # α(ω) in cm⁻¹ on the model's grid
>>> res.verdict()                                           # is IPA good enough for SiC?

Inputs: file paths (CIF, POSCAR, extended XYZ, any ASE format, pymatgen JSON), pymatgen ``Structure``, ASE
``Atoms`` or pasted text (:func:`parse_text`). Each result holds ``Spectrum`` objects (trace of Im ε on the
grid of the model's target spec; Re ε by Kramers–Kronig; n, k, α, R, loss via ``Spectrum.optics()``) and, with the
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
from typing import Any

import numpy as np

from .spectra import Spectrum, kk_real_from_imag, kk_real_from_imag_matrix
from .structures import DEFAULT_MAX_ATOMS, StructureError
from .targets import LEVELS, SC_GOOD_ENOUGH, PostProcess, level_choices, levels_of

log = logging.getLogger(__name__)

#: Predicted SC[RPA; IPA] at or above which the IPA spectrum is "good enough" (see
#: :data:`optiladder.targets.SC_GOOD_ENOUGH`); below it the local-field effects matter and RPA should be used.
IPA_GOOD_ENOUGH_SC = SC_GOOD_ENOUGH

#: Level options of the user interfaces (every level of the ladder, and ``both``)
LEVEL_CHOICES: tuple[str, ...] = level_choices()
LevelChoice = str
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

    ``x`` ``[n_nodes, node_dim]``, ``edge_index`` ``[2, n_edges]`` (offset per graph), ``edge_attr``
    ``[n_edges, edge_dim]``, ``batch`` ``[n_nodes]`` (graph index per node), ``num_graphs``. Built with two NumPy
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

    ``spectra``: level → :class:`~optiladder.spectra.Spectrum` with Im ε (trace, or x/y/z for a tensor model)
    and Re ε (Kramers–Kronig) on the model's grid (eV). ``spread``: level → the ensemble's standard deviation
    of Im ε over its members (ensembles only). ``sc``: predicted SC[RPA; IPA] (None without the ``sc`` model).
    ``trust``: level → expected SC[ML; DFT], its 80 % interval, member agreement and latent distance (calibrated
    ensembles only, :mod:`optiladder.trust`). ``error``: one line ``"<name>: <problem>"`` if the input failed
    (then ``spectra`` is empty). ``warnings``: one line each why the prediction should not be trusted: the
    crystal lies outside the models' training domain (:func:`optiladder.domain.static_warnings`) or a calibrated
    ensemble expects a poor spectrum (:mod:`optiladder.trust`); the verdict then says it is uncertain.
    ``novel_bonds``: the crystal's first-shell element pairs that no training crystal has
    (:func:`optiladder.domain.novel_bonds`), listed whether or not they raise a warning.
    """

    name: str
    formula: str | None = None
    nsites: int | None = None
    spectra: dict[str, Spectrum] = field(default_factory=dict)
    spread: dict[str, np.ndarray] = field(default_factory=dict)
    sc: float | None = None
    threshold: float = IPA_GOOD_ENOUGH_SC
    error: str | None = None
    structure: Any = None
    embedding: np.ndarray | None = None
    trust: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    novel_bonds: list[str] = field(default_factory=list)

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
        ``optics``) ``n``, ``k``, ``alpha_cm`` (cm⁻¹), ``R``, ``loss`` (and ``eps_im_spread`` for an ensemble);
        every ``stride``-th grid point, values rounded to ``digits`` significant digits."""
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
            "trust": self.trust,
            "warnings": list(self.warnings),
            "novel_bonds": list(self.novel_bonds),
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
            if lv in self.spread:  # an ensemble's standard deviation of Im ε over its members
                out["spectra"][lv]["eps_im_spread"] = _rounded(self.spread[lv][::stride], digits)
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
    memo: Any = None,
) -> tuple[Prediction, dict[str, Any] | None]:
    """Read, validate and build the graphs of one input: ``(Prediction without spectra, graphs or None)``.

    ``source``: what :meth:`Predictor.predict` takes, or CIF/POSCAR text with ``text=True`` (:func:`parse_text`,
    ``label`` as its file name); ``validated``: a checked ``Structure``. ``featurizers``: hash → featurizer;
    ``domain``: the :class:`~optiladder.domain.TrainingDomain` for the warnings; ``timings``: ``"read"`` and
    ``"graph"`` seconds are added to it; ``memo``: an :class:`~optiladder.foundation.EmbeddingMemo` of foundation
    embeddings (a structure seen before is not embedded again). Per-input isolation: what this input's own steps raise for a bad input
    (:class:`StructureError`, ``GraphError`` and other ``ValueError``, ``ArithmeticError``, ``MemoryError``)
    becomes the result's one-line ``error``; anything else is a bug and propagates. Needs no torch (the
    service runs it in worker processes).
    """
    return prepare_inputs(
        [(source, label)],
        featurizers,
        domain,
        max_atoms=max_atoms,
        validated=validated,
        text=text,
        threshold=threshold,
        timings=timings,
        memo=memo,
    )[0]


def _input_error(label: str, exc: BaseException) -> str:
    """The one-line error of an input whose own reading or graph building raised ``exc``."""
    from .graphs import GraphError

    if isinstance(exc, StructureError):
        return str(exc)
    if isinstance(exc, GraphError):
        return str(StructureError(label, str(exc)))
    log.info("%s: %s", label, exc, exc_info=exc)
    detail = " ".join(str(exc).split())[:200]
    return f"{label}: {type(exc).__name__} while reading or building its graph ({detail})"


def _graph_pairs(graphs: dict[str, Any], featurizers: dict[str, Any]) -> set[str] | None:
    """First-shell element pairs from the edges of a structure's graph (the neighbour search is done once), or
    None where the graph's cutoff is too short for them (then :func:`~optiladder.domain.novel_bonds` searches)."""
    from .domain import first_shell_pairs_from_edges

    for h, g in graphs.items():
        f = featurizers[h]
        if not hasattr(f, "elements") or not hasattr(g, "distances"):
            continue
        symbols = [f.elements[int(k)][0] for k in g.species]
        return first_shell_pairs_from_edges(g.edge_index[0], g.edge_index[1], g.distances, symbols, f.cutoff)
    return None


def prepare_inputs(
    items: Sequence[tuple[Any, str]],
    featurizers: dict[str, Any],
    domain: Any = None,
    *,
    max_atoms: int = DEFAULT_MAX_ATOMS,
    validated: bool = False,
    text: bool = False,
    threshold: float = IPA_GOOD_ENOUGH_SC,
    timings: dict[str, float] | None = None,
    memo: Any = None,
) -> list[tuple[Prediction, dict[str, Any] | None]]:
    """:func:`prepare_input` of several ``(source, label)`` pairs, in order, each input isolated as there. The
    graphs of all readable inputs are built together, so structure-dependent node features (a foundation
    model) run as one batched forward instead of one per input."""
    from .domain import novel_bonds, static_warnings
    from .graphs import INPUT_ERRORS, structure_graphs

    out: list[list[Any]] = [[Prediction(name=label, threshold=threshold), None] for _, label in items]
    read: list[tuple[int, Any]] = []
    t0 = time.perf_counter()
    for k, (source, label) in enumerate(items):
        try:
            if text:
                s = parse_text(source, label, max_atoms=max_atoms)
            else:
                s = source if validated else read_structure(source, name=label, max_atoms=max_atoms)
            read.append((k, s))
        except (StructureError, *INPUT_ERRORS) as exc:
            out[k][0].error = _input_error(label, exc)
    t1 = time.perf_counter()
    built = {h: structure_graphs([s for _, s in read], f, memo=memo) for h, f in featurizers.items()}
    t2 = time.perf_counter()
    for pos, (k, s) in enumerate(read):
        res = out[k][0]
        try:
            graphs = {}
            for h, gs in built.items():
                if isinstance(gs[pos], Exception):
                    raise gs[pos]
                graphs[h] = gs[pos]
            with warnings.catch_warnings():  # pymatgen warns about noble gases' electronegativity
                warnings.simplefilter("ignore", UserWarning)
                res.formula = s.composition.reduced_formula
            res.warnings = static_warnings(s, domain)
            if domain is not None and domain.bonds:
                res.novel_bonds = novel_bonds(s, domain, _graph_pairs(graphs, featurizers))
        except (StructureError, *INPUT_ERRORS) as exc:
            res.error = _input_error(res.name, exc)
            continue
        res.structure, res.nsites = s, len(s)
        out[k][1] = graphs
    if timings is not None:
        timings["read"] = timings.get("read", 0.0) + t1 - t0
        timings["graph"] = timings.get("graph", 0.0) + t2 - t1
    return [(res, graphs) for res, graphs in out]


# --------------------------------------------------------------------------------------------------
# predictor
# --------------------------------------------------------------------------------------------------
class Predictor:
    """Trained models loaded once; predicts spectra and the IPA verdict for batches of structures.

    ``models``: name → :class:`~optiladder.training.model.Model`; what each predicts is read from its target
    spec: spectrum (or tensor) models give the spectra of their level, a scalar ``sc`` model gives SC[X; Y].
    At least one spectrum model. ``batch_size``: graphs per forward pass. ``threshold``: SC[RPA; IPA] at which
    IPA counts as good enough (:data:`IPA_GOOD_ENOUGH_SC`). ``max_atoms``: larger cells are refused.
    ``smooth_ev``: override of the Gaussian smoothing (eV) the models' target specs record (None: as recorded;
    0 = raw network output).

    ``fast`` (default): every OptiMate network runs in one NumPy forward
    (:class:`~optiladder.nn.stacked.StackedOptiMate`: stacked float32 weights, batch norm folded, duplicate
    edges collapsed) and Re ε comes from the FFT form of Kramers–Kronig; outputs equal the torch path's to
    float32 rounding (tests/predict/test_fast.py). ``fast=False`` runs each network in torch on the full
    multigraph and Kramers–Kronig as a dense matrix product: the path before, kept as the reference. Models the
    stacked forward does not know (another architecture) run in torch either way. ``head_precision`` (fast path
    only): ``"fp16"`` (default) keeps the weights of the large spectrum heads (27 M of v2026.12.07's 31.5 M
    parameters) in float16 and multiplies in float32, which halves the bytes one CIF reads; Im ε then differs
    from the float32 path by ~1e-4 of its peak (tests/predict/test_fast.py, bench/predict/results.md);
    ``"fp32"`` equals the torch path to float32 rounding.
    ``embedding_memo``: foundation embeddings of this many structures are kept in memory
    (:class:`~optiladder.foundation.EmbeddingMemo`), so a structure predicted again skips the foundation models;
    0 keeps none.
    """

    def __init__(
        self,
        models: dict[str, Any],
        *,
        batch_size: int = 64,
        threshold: float = IPA_GOOD_ENOUGH_SC,
        max_atoms: int = DEFAULT_MAX_ATOMS,
        smooth_ev: float | None = None,
        device: str = "cpu",
        fast: bool = True,
        head_precision: str = "fp16",
        embedding_memo: int | None = None,
    ):
        from .foundation import DEFAULT_MEMO_SIZE, EmbeddingMemo

        self.models = dict(models)
        self.fast = bool(fast)
        from .nn.stacked import HEAD_PRECISIONS

        if head_precision not in HEAD_PRECISIONS:
            raise ValueError(f"head_precision {head_precision!r}: expected one of {HEAD_PRECISIONS}")
        self.head_precision = head_precision
        size = DEFAULT_MEMO_SIZE if embedding_memo is None else int(embedding_memo)
        #: foundation embeddings of the structures seen (None: no memo)
        self.embedding_memo = EmbeddingMemo(size) if size > 0 else None
        self._stacked: dict[str, Any] | None = None
        #: level → name of the model that predicts its spectrum
        self.level_models: dict[str, str] = {}
        self.sc_model: str | None = None
        for name, m in self.models.items():
            t = m.target
            if t.is_spectrum:
                if t.level in self.level_models:
                    raise ValueError(f"models {self.level_models[t.level]} and {name} both predict {t.level}")
                self.level_models[t.level] = name
            elif t.quantity == "sc":
                self.sc_model = name
        if not self.level_models:
            raise ValueError("a Predictor needs at least one spectrum model")
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        self.max_atoms = int(max_atoms)
        self.smooth_ev = None if smooth_ev is None else float(smooth_ev)
        self.device = device
        feats = {m.featurizer.hash(): m.featurizer for m in self.models.values()}
        #: featurizer hash → featurizer; graphs are built once per distinct featurizer
        self.featurizers = feats
        self._model_feat = {name: m.featurizer.hash() for name, m in self.models.items()}
        self.timings: dict[str, float] = {"read": 0.0, "graph": 0.0, "forward": 0.0, "post": 0.0}
        self._domain: Any = None
        from .trust import Trust

        #: model name → calibrated uncertainty (ensembles whose card has one): expected SC and warnings
        self.trust = {
            name: t for name in self.level_models.values() if (t := Trust.of(self.models[name])) is not None
        }

    @classmethod
    def from_pretrained(
        cls,
        levels: Sequence[str] = LEVELS,
        *,
        sc: bool = True,
        root: str | Path | None = None,
        device: str = "cpu",
        versions: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Load the shipped models of ``levels`` (and ``sc``), newest versions unless ``versions`` pins some
        (name → version); every file is checksum-verified."""
        from .pretrained import load_model

        versions = versions or {}
        names = [lv for lv in LEVELS if lv in levels] + (["sc"] if sc else [])
        return cls(
            {n: load_model(n, versions.get(n), root=root, device=device) for n in names},
            device=device,
            **kwargs,
        )

    @property
    def levels(self) -> tuple[str, ...]:
        """Levels whose spectra the loaded models predict, cheapest first."""
        return tuple(lv for lv in LEVELS if lv in self.level_models)

    @property
    def grid(self) -> np.ndarray:
        """ω (eV) of the first spectrum model (each spectrum carries its own grid)."""
        return self.models[self.level_models[self.levels[0]]].target.omega()

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
        from .graphs import GraphError, structure_graphs

        out = {}
        for h, f in self.featurizers.items():
            g = structure_graphs([structure], f, memo=self.embedding_memo)[0]
            if isinstance(g, GraphError):
                raise StructureError(name, str(g)) from None
            if isinstance(g, Exception):
                raise g
            out[h] = g
        return out

    def forward(
        self,
        graphs: Sequence[dict[str, Any]],
        *,
        embed: bool = False,
        models: Iterable[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Stage 3: model name → raw output ``[n, out_dim]`` (spectra) or ``[n]`` (scalars) for ``models``
        (default: all loaded); an ensemble adds ``"<name>.spread"`` (standard deviation over its members); with
        ``embed`` also ``"embedding"`` ``[n, embedding_dim]``, the sc model's (else the first model's) pooled
        latent vector."""
        if self.fast:
            stacked = self._stacked_nets()
            if stacked:
                return self._forward_fast(graphs, stacked, embed=embed, models=models)
        return self._forward_torch(graphs, embed=embed, models=models)

    def _stacked_nets(self) -> dict[str, Any]:
        """Featurizer hash → :class:`~optiladder.nn.stacked.StackedOptiMate` of every model reading those graphs
        (built once; empty when a network has no fast form, then the torch path runs)."""
        if self._stacked is None:
            from .nn.stacked import StackedOptiMate

            try:
                self._stacked = {
                    h: StackedOptiMate(
                        {n: m.nets for n, m in self.models.items() if self._model_feat[n] == h},
                        head_precision=self.head_precision,
                    )
                    for h in self.featurizers
                }
            except NotImplementedError as exc:
                log.info("no fast forward (%s): the torch path runs", exc)
                self._stacked = {}
        return self._stacked

    def _forward_fast(
        self,
        graphs: Sequence[dict[str, Any]],
        stacked: dict[str, Any],
        *,
        embed: bool,
        models: Iterable[str] | None,
    ) -> dict[str, np.ndarray]:
        """:meth:`forward` by the stacked NumPy networks (same keys, same dtypes as the torch path)."""
        from .nn.stacked import FastBatch

        embed_model, wanted = self._wanted(embed, models)
        out: dict[str, np.ndarray] = {}
        for h, net in stacked.items():
            if not wanted & set(net.names):
                continue
            y, z = net.forward(FastBatch.from_graphs([g[h] for g in graphs]))
            for name in net.names:
                if name not in wanted:
                    continue
                m = self.models[name]
                if embed and name == embed_model:
                    out["embedding"] = z[name]
                mean = y[name].mean(axis=0) if m.members > 1 else y[name][0]
                spread = y[name].std(axis=0) if m.members > 1 else None
                self._put(out, name, mean, spread, z[name] if name in self.trust else None)
        return out

    def _wanted(self, embed: bool, models: Iterable[str] | None) -> tuple[str, set[str]]:
        """``(model whose latent is "embedding", names of the models to run)`` of a :meth:`forward` call."""
        embed_model = self.sc_model or next(iter(self.models))
        return embed_model, set(self.models if models is None else models) | (
            {embed_model} if embed else set()
        )

    def _put(
        self,
        out: dict[str, np.ndarray],
        name: str,
        y: np.ndarray,
        spread: np.ndarray | None,
        z0: np.ndarray | None,
    ) -> None:
        """One model's outputs into :meth:`forward`'s dict, as both paths return them: the (mean) output as
        float64 (a scalar target's first column), its ensemble spread, and the first member's latent for trust."""
        y = np.asarray(y, dtype=np.float64)
        out[name] = y if self.models[name].target.is_spectrum else y[:, 0]
        if spread is not None:
            out[f"{name}.spread"] = np.asarray(spread, dtype=np.float64)
        if z0 is not None:
            out[f"{name}.embedding"] = np.asarray(z0, dtype=np.float64)

    def _forward_torch(
        self, graphs: Sequence[dict[str, Any]], *, embed: bool = False, models: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """:meth:`forward` network by network in torch on the full multigraph (the reference path)."""
        import torch

        out: dict[str, np.ndarray] = {}
        batches: dict[str, GraphBatch] = {}
        embed_model, wanted = self._wanted(embed, models)
        with torch.inference_mode():
            for name, m in self.models.items():
                if name not in wanted:
                    continue
                h = self._model_feat[name]
                if h not in batches:
                    batches[h] = GraphBatch.from_graphs([g[h] for g in graphs], self.device)
                if embed and name == embed_model:
                    out["embedding"] = m.embed(batches[h]).cpu().numpy()
                y, spread = m.forward(batches[h]) if m.members > 1 else (m(batches[h]), None)
                z0 = m.nets[0].embed(batches[h]).cpu().numpy() if name in self.trust else None
                self._put(out, name, y.cpu().numpy(), None if spread is None else spread.cpu().numpy(), z0)
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
        missing = [lv for lv in want if lv not in self.level_models]
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

    def _postprocess(self, model: Any) -> PostProcess:
        """The post-processing of a model's output: its target's, with the smoothing overridden if asked."""
        post = model.target.postprocess
        if self.smooth_ev is None:
            return post
        return PostProcess(smooth_ev=self.smooth_ev, clip_min=post.clip_min, kk_tail=post.kk_tail)

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
            memo=self.embedding_memo,
        )

    def _predict_chunk(
        self, chunk, want: tuple[str, ...], embed: bool, validated: bool = False
    ) -> list[Prediction]:
        prepared = prepare_inputs(
            chunk,
            self.featurizers,
            self.domain,
            max_atoms=self.max_atoms,
            validated=validated,
            threshold=self.threshold,
            timings=self.timings,
            memo=self.embedding_memo,
        )
        results = [res for res, _ in prepared]
        ok = [(k, g) for k, (_, g) in enumerate(prepared) if g is not None]
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
        names = [self.level_models[lv] for lv in want]
        needed = [*names, *([self.sc_model] if self.sc_model else [])]
        out = self.forward([g for _, g in ok], embed=embed, models=needed)
        t1 = time.perf_counter()
        finished = {}
        for lv, name in zip(want, names, strict=True):
            m = self.models[name]
            post = self._postprocess(m)
            omega = m.target.omega()
            im = m.finish(out[name], post).reshape(len(ok), len(m.target.components), omega.size)
            finished[lv] = (post, omega, im)
        res_re = _kramers_kronig(finished, fast=self.fast)
        for lv, name in zip(want, names, strict=True):
            m = self.models[name]
            post, omega, im = finished[lv]
            comps = m.target.components
            re = res_re[lv]
            spread = out.get(f"{name}.spread")
            card = m.card
            for row, (idx, _) in enumerate(ok):
                results[idx].spectra[lv] = Spectrum(
                    omega=omega,
                    im={c: im[row, k] for k, c in enumerate(comps)},
                    re={c: re[row, k] for k, c in enumerate(comps)},
                    level=lv,
                    provenance={
                        "kind": "prediction",
                        "model": card.get("full_name", name),
                        "model_version": card.get("version"),
                        "model_id": card.get("id"),
                        "model_date": card.get("created"),
                        "members": m.members,
                        "postprocess": post.to_dict(),
                        "input": results[idx].name,
                    },
                    kk_tail=post.kk_tail,
                )
                if spread is not None:
                    results[idx].spread[lv] = spread[row]
            if name in self.trust:
                assessed = self.trust[name].assess(
                    out[name], spread, out[f"{name}.embedding"], [results[idx].novel_bonds for idx, _ in ok]
                )
                for (idx, _), a in zip(ok, assessed, strict=True):
                    results[idx].trust[lv] = a.to_dict()
                    results[idx].warnings.extend(a.warnings)
        for row, (idx, _) in enumerate(ok):
            if self.sc_model in out:
                results[idx].sc = float(out[self.sc_model][row])
            if "embedding" in out:
                results[idx].embedding = out["embedding"][row]
        self.timings["forward"] += t1 - t0
        self.timings["post"] += time.perf_counter() - t1
        return results


def _kramers_kronig(
    finished: dict[str, tuple[Any, np.ndarray, np.ndarray]], *, fast: bool
) -> dict[str, np.ndarray]:
    """Re ε of every level's Im ε ``[n, components, G]`` (``finished``: level → (post-processing, ω, Im ε)).
    ``fast``: the FFT form, one call for all levels on the same grid with the same tail (each row's transform
    is its own: batching only saves the per-call work, ~0.2 ms for one CIF's two levels); else the dense
    kernel level by level (the reference path)."""
    if not fast:
        return {
            lv: kk_real_from_imag_matrix(om, im, tail=post.kk_tail) for lv, (post, om, im) in finished.items()
        }
    groups: dict[tuple[bytes, Any], list[str]] = {}
    for lv, (post, om, _) in finished.items():
        groups.setdefault((om.tobytes(), post.kk_tail), []).append(lv)
    out: dict[str, np.ndarray] = {}
    for (_, tail), lvs in groups.items():
        om = finished[lvs[0]][1]
        re = kk_real_from_imag(om, np.concatenate([finished[lv][2] for lv in lvs], axis=1), tail=tail)
        start = 0
        for lv in lvs:
            c = finished[lv][2].shape[1]
            out[lv] = re[:, start : start + c]
            start += c
    return out


def prediction_figure(result: Prediction, emax: float | None = None):
    """Matplotlib figure of :func:`plot_prediction` (three panels: Im ε, Re ε, α); the energy axis is each
    spectrum's own grid, up to ``emax`` eV (default: the end of the grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    if emax is None:
        emax = max(float(sp.omega[-1]) for sp in result.spectra.values()) if result.spectra else 1.0
    palette = ("#d97706", "#2457c5", "#15803d", "#9333ea")
    styles = {lv: ("--" if k == 0 else "-", palette[k % len(palette)]) for k, lv in enumerate(LEVELS)}
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
    return fig


def plot_prediction(result: Prediction, path: str | Path, emax: float | None = None) -> Path:
    """PNG with three panels: Im ε, Re ε and α (cm⁻¹) of every predicted level, verdict in the title
    (see :func:`prediction_figure`)."""
    import matplotlib.pyplot as plt

    fig = prediction_figure(result, emax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = [
    "IPA_GOOD_ENOUGH_SC",
    "LEVEL_CHOICES",
    "GraphBatch",
    "LevelChoice",
    "Prediction",
    "Predictor",
    "expand_inputs",
    "levels_of",
    "parse_text",
    "plot_prediction",
    "prediction_figure",
    "prepare_input",
    "read_structure",
]
