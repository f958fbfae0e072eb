"""Static domain checks of a prediction: is a crystal like the ones the shipped models were trained on?

The training domain is read from the model cards (``training.train_ids``) and the bundled Alexandria structures
of those ids (:func:`optiladder.structures.alexandria`): the elements seen, the elements seen as an elemental
crystal, the largest cell and the range of volume per atom. :func:`static_warnings` compares one structure
with it and returns one-line warnings (empty: inside the domain on every static count). They do not refuse a
prediction; they say why its verdict should not be trusted. The rules and thresholds (docs/predict.md):

* an element no training crystal contains;
* more atoms per cell than any training cell (the card's ``max_nsites``) and, for models whose ensemble card
  records the cell sizes its uncertainty was calibrated on (``uncertainty.fitted_nsites``, the validation
  crystals), more than any of those too: inside the calibrated sizes the ensemble's expected SC speaks for the
  cell (e.g. models trained on ≤ 3-atom cells and calibrated on 2–4-atom validation cells flag 5 atoms and up);
* an odd number of electrons per cell (a metal or open-shell system: the models learned PBE spectra of
  materials with a gap of at least 0.5 eV, which have an even number of electrons per cell);
* only metallic elements (pymatgen's ``Element.is_metal``): likely a metal;
* a crystal of one element that no elemental training crystal has (e.g. pure H, Al, Na, Mg);
* volume per atom above 1.25 × or below 0.8 × the training range (vacuum, isolated atoms; compressed cells).

The domain also holds the training crystals' **bond types** (:attr:`TrainingDomain.bonds`): the unordered
element pairs of each atom's first coordination shell (:func:`first_shell_pairs`, neighbours within
:data:`FIRST_SHELL_FACTOR` × the atom's nearest-neighbour distance). :func:`novel_bonds` lists the pairs of a
crystal that no training crystal has (e.g. B–N: the shipped models never saw one). A novel pair alone is no
warning: :mod:`optiladder.trust` warns when it comes with a low expected SC (the card's
``rule.novel_bond_max_expected``; docs/predict.md).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Volume per atom above ``LOW_DENSITY_FACTOR`` × the largest training value is flagged (vacuum, isolated atoms).
LOW_DENSITY_FACTOR = 1.25
#: Volume per atom below ``HIGH_DENSITY_FACTOR`` × the smallest training value is flagged (compressed cells).
HIGH_DENSITY_FACTOR = 0.8
#: An atom's first shell: its neighbours within this factor × its nearest-neighbour distance.
FIRST_SHELL_FACTOR = 1.1


def first_shell_pairs(structure: Any, factor: float = FIRST_SHELL_FACTOR) -> set[str]:
    """The unordered element pairs (``"B-N"``: symbols sorted) of every atom and its first-shell neighbours.

    An atom's first shell holds its neighbours (periodic images included) within ``factor`` × its own
    nearest-neighbour distance, so rock-salt NaCl gives ``{"Cl-Na"}`` (the Na–Na distance is √2 × Na–Cl) and
    diamond Si ``{"Si-Si"}``. ``structure``: a pymatgen ``Structure``, its ``as_dict()`` form or ASE ``Atoms``
    (:func:`optiladder.structures.cell_arrays`). The neighbour search is pymatgen's ``find_points_in_spheres``
    (what ``Structure.get_neighbor_list`` and ``get_all_neighbors`` run), called on the arrays so that the
    bundled structure dicts need no ``Structure`` (~0.2 ms a crystal).
    """
    from pymatgen.optimization.neighbors import find_points_in_spheres

    from .structures import cell_arrays

    lattice, cart, symbols = cell_arrays(structure)
    lattice, cart = np.ascontiguousarray(lattice), np.ascontiguousarray(cart)
    n = len(symbols)
    # every atom's own periodic image lies within the shortest lattice vector, so this radius always finds a
    # nearest neighbour and its whole first shell
    r_max = factor * float(np.linalg.norm(lattice, axis=1).min()) * (1 + 1e-6)
    r = min(r_max, 4.0)
    pbc = np.ones(3, dtype=np.int64)
    while True:
        centre, other, _, dist = find_points_in_spheres(cart, cart, r=r, pbc=pbc, lattice=lattice, tol=1e-8)
        keep = dist > 1e-8  # the atom itself
        centre, other, dist = centre[keep], other[keep], dist[keep]
        nearest = np.full(n, np.inf)
        np.minimum.at(nearest, centre, dist)
        need = factor * nearest
        if r >= r_max or np.all(need <= r):
            break
        r = min(r_max, max(2.0 * r, float(need[np.isfinite(need)].max(initial=0.0))))
    return _shell_pairs(centre, other, dist, need, symbols)


def _shell_pairs(
    centre: np.ndarray, other: np.ndarray, dist: np.ndarray, need: np.ndarray, symbols: Any
) -> set[str]:
    """Element pairs of the neighbour-list entries within each centre's shell radius ``need``."""
    shell = dist <= need[centre] * (1 + 1e-9)
    return {
        "-".join(sorted((symbols[i], symbols[j]))) for i, j in zip(centre[shell], other[shell], strict=True)
    }


def first_shell_pairs_from_edges(
    centre: np.ndarray,
    other: np.ndarray,
    dist: np.ndarray,
    symbols: Any,
    cutoff: float,
    factor: float = FIRST_SHELL_FACTOR,
) -> set[str] | None:
    """:func:`first_shell_pairs` from a neighbour list already at hand (a crystal graph's edges: centre and
    neighbour indices, distances in Å, every periodic image within ``cutoff``), or None where that list cannot
    hold every first shell (an atom without a neighbour, or one whose shell radius ``factor`` × nearest exceeds
    ``cutoff``): then the caller searches again. ``symbols``: element symbol per atom."""
    n = len(symbols)
    centre, other = np.asarray(centre, np.int64), np.asarray(other, np.int64)
    dist = np.asarray(dist, np.float64)
    keep = dist > 1e-8
    centre, other, dist = centre[keep], other[keep], dist[keep]
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, centre, dist)
    need = factor * nearest
    if not np.all(need <= cutoff):
        return None
    return _shell_pairs(centre, other, dist, need, symbols)


@dataclass(frozen=True)
class TrainingDomain:
    """What the training crystals span. ``volume_per_atom``: (min, max) in Å³; ``cell_sizes``: (atoms per cell,
    number of training crystals) pairs, ascending; ``calibrated_max_nsites``: the largest cell the uncertainty
    of the models was calibrated on (None: no calibrated ensemble); ``bonds``: the first-shell element pairs of
    the training crystals (:func:`first_shell_pairs`)."""

    elements: frozenset[str]
    elemental: frozenset[str]
    max_nsites: int
    volume_per_atom: tuple[float, float]
    n_train: int
    cell_sizes: tuple[tuple[int, int], ...] = ()
    calibrated_max_nsites: int | None = None
    bonds: frozenset[str] = frozenset()

    @property
    def warn_nsites(self) -> int:
        """Cells with more atoms than this get a static warning (see the module docstring)."""
        return max(self.max_nsites, self.calibrated_max_nsites or 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the service's ``/models`` and the page state it)."""
        return {
            "n_train": self.n_train,
            "elements": sorted(self.elements),
            "max_nsites": self.max_nsites,
            "cell_sizes": {str(k): v for k, v in self.cell_sizes},
            "calibrated_max_nsites": self.calibrated_max_nsites,
            "warn_above_nsites": self.warn_nsites,
            "volume_per_atom_A3": list(self.volume_per_atom),
            "bond_types": len(self.bonds),
        }

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> TrainingDomain | None:
        """The domain of bundled Alexandria ids (ids not in the bundled list are ignored); None if none is."""
        index = _alexandria_index()
        entries = [index[i] for i in set(ids) if i in index]
        if not entries:
            return None
        vpa = [e[2] for e in entries]
        sizes = Counter(e[1] for e in entries)
        return cls(
            elements=frozenset(el for e in entries for el in e[0]),
            elemental=frozenset(e[0][0] for e in entries if len(e[0]) == 1),
            max_nsites=max(e[1] for e in entries),
            volume_per_atom=(float(min(vpa)), float(max(vpa))),
            n_train=len(entries),
            cell_sizes=tuple(sorted(sizes.items())),
            bonds=frozenset(p for e in entries for p in e[3]),
        )

    @classmethod
    def from_cards(cls, cards: Iterable[dict]) -> TrainingDomain | None:
        """The union of the training ids named in model cards (``training.train_ids`` or ``train_ids``)."""
        ids: set[str] = set()
        calibrated: list[int] = []
        for card in cards:
            training = card.get("training") if isinstance(card.get("training"), dict) else {}
            ids.update(training.get("train_ids") or card.get("train_ids") or ())
            fitted = (card.get("uncertainty") or {}).get("fitted_nsites") or {}
            calibrated.extend(int(k) for k, v in fitted.items() if v)
        domain = cls.from_ids(ids)
        if domain is not None and calibrated:
            domain = replace(domain, calibrated_max_nsites=max(calibrated))
        return domain


#: The bundled structures' first-shell pairs, precomputed (``scripts/make_bond_table.py``).
BOND_TABLE = "alexandria/first_shell_pairs.json.gz"


def bond_table(entries: Iterable[dict], factor: float = FIRST_SHELL_FACTOR) -> dict[str, list[str]]:
    """mat_id → sorted first-shell pairs of Alexandria entries (what :data:`BOND_TABLE` holds)."""
    return {e["mat_id"]: sorted(first_shell_pairs(e["structure"], factor)) for e in entries}


def _read_bond_table() -> dict[str, list[str]]:
    """The bundled :data:`BOND_TABLE` (``{}`` if missing or made with another factor)."""
    import gzip
    import json
    from importlib import resources

    path = resources.files("optiladder.resources").joinpath(BOND_TABLE)
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        table = json.loads(gzip.decompress(fh.read()))
    if table.get("factor") != FIRST_SHELL_FACTOR:
        log.warning("%s was made with factor %s, not %s: ignored", BOND_TABLE, table.get("factor"),
                    FIRST_SHELL_FACTOR)  # fmt: skip
        return {}
    return table["pairs"]


@lru_cache(maxsize=1)
def _alexandria_index() -> dict[str, tuple[tuple[str, ...], int, float, frozenset[str]]]:
    """mat_id → (elements, number of sites, volume per atom in Å³, first-shell pairs) of the bundled structures.

    The pairs come from the precomputed :data:`BOND_TABLE` (computing them for all 3,538 structures takes
    ~1 s); an entry the table lacks is computed here."""
    from .structures import alexandria

    table = _read_bond_table()
    out = {}
    for e in alexandria():
        lattice = np.asarray(e["structure"]["lattice"]["matrix"], dtype=np.float64)
        n = len(e["structure"]["sites"])
        pairs = table.get(e["mat_id"])
        pairs = frozenset(first_shell_pairs(e["structure"]) if pairs is None else pairs)
        out[e["mat_id"]] = (tuple(sorted(e["elements"])), n, float(abs(np.linalg.det(lattice))) / n, pairs)
    return out


def novel_bonds(structure: Any, domain: TrainingDomain | None, pairs: set[str] | None = None) -> list[str]:
    """The first-shell element pairs of ``structure`` that no training crystal has, sorted (``[]`` without a
    domain or one that records no bonds); ``pairs``: its first-shell pairs when already known (e.g.
    :func:`first_shell_pairs_from_edges` of its graph)."""
    if domain is None or not domain.bonds:
        return []
    return sorted((first_shell_pairs(structure) if pairs is None else pairs) - domain.bonds)


@lru_cache(maxsize=256)
def _is_metal(symbol: str) -> bool:
    from pymatgen.core import Element

    return bool(Element(symbol).is_metal)


def static_warnings(structure: Any, domain: TrainingDomain | None) -> list[str]:
    """One-line warnings for a validated pymatgen ``Structure`` (see the module docstring); ``[]`` if none."""
    with warnings.catch_warnings():  # pymatgen warns about noble gases' electronegativity
        warnings.simplefilter("ignore", UserWarning)
        species = structure.species  # a property that checks every site: read once
        symbols = sorted({sp.symbol for sp in species})
        electrons = int(sum(sp.Z for sp in species))
        metals = all(_is_metal(s) for s in symbols)
    n = len(structure)
    vpa = float(structure.volume) / n
    out: list[str] = []
    if domain is not None:
        unseen = [s for s in symbols if s not in domain.elements]
        if unseen:
            out.append(f"element(s) {', '.join(unseen)} in no training crystal")
        if n > domain.warn_nsites:
            if domain.calibrated_max_nsites is None:
                out.append(f"{n} atoms per cell, more than any training cell (at most {domain.max_nsites})")
            else:
                out.append(
                    f"{n} atoms per cell, more than any training cell (at most {domain.max_nsites}) or any cell "
                    f"the uncertainty was calibrated on (at most {domain.calibrated_max_nsites})"
                )
    if electrons % 2:
        out.append(f"odd number of electrons per cell ({electrons}): a metal or open-shell system")
    if metals:
        out.append(f"only metallic elements ({', '.join(symbols)}): likely a metal")
    if domain is not None:
        if len(symbols) == 1 and symbols[0] not in domain.elemental:
            out.append(
                f"a crystal of {symbols[0]} alone: no elemental {symbols[0]} crystal in the training data"
            )
        lo, hi = domain.volume_per_atom
        if vpa > LOW_DENSITY_FACTOR * hi:
            out.append(
                f"volume per atom {vpa:.1f} Å³ above the training range ({lo:.1f}–{hi:.1f} Å³): vacuum"
            )
        elif vpa < HIGH_DENSITY_FACTOR * lo:
            out.append(f"volume per atom {vpa:.2f} Å³ below the training range ({lo:.1f}–{hi:.1f} Å³)")
    return out
