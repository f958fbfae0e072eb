"""Seeded mutations of real CIF and POSCAR text, and the named hostile inputs of issue 11.

:func:`corpus` gives real structure files as (name, text): the bundled examples, the test fixtures and a few
bundled Alexandria crystals written by pymatgen. :func:`mutate` changes one text in one to three random ways
that a hostile or careless user would: extreme, non-finite or zero numbers, deleted, duplicated, swapped or
truncated lines, random bytes, unknown elements, wrong counts, sheared cells. Everything is drawn from one
``random.Random(seed)``, so a failure is reproduced by its seed.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
EXTREMES = (
    "1e30", "-1e30", "1e6", "600", "1e-30", "0", "0.0", "-0", "nan", "NaN", "inf", "-inf", "1e308", "1e309",
    "99999999999999999999", "-1", "0.5", "7", "120", "179.9", "0.001", "1e-8", "3.0", "",
)  # fmt: skip
SYMBOLS = ("Xx", "Tc", "H", "Og", "Al", "Na", "Mg", "Si", "Fe", "U", "D", "", "123", "Si1+", "C C")
JUNK = ("\x00", "\ufffd", "#", ";", "'", '"', "loop_", "_cell_length_a", "data_", "\t", "\r", "é", "{", "[")


@lru_cache(maxsize=1)
def corpus() -> tuple[tuple[str, str], ...]:
    """Real CIF/POSCAR texts: examples/, tests/fixtures/structures and 8 bundled Alexandria crystals."""
    import warnings

    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    from optiladder.structures import alexandria

    out = []
    for folder in (ROOT / "examples", ROOT / "tests" / "fixtures" / "structures"):
        for p in sorted(folder.iterdir()):
            if p.suffix == ".cif" or p.name.startswith("POSCAR") or p.suffix == ".POSCAR":
                out.append((p.name, p.read_text()))
    entries = alexandria()
    rng = random.Random(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, e in enumerate(rng.sample(entries, 8)):
            s = Structure.from_dict(e["structure"])
            if k % 2:
                out.append((f"{e['mat_id']}.cif", str(CifWriter(s))))
            else:
                out.append((f"POSCAR_{e['mat_id']}", Poscar(s).get_str()))
    return tuple(out)


def _replace_number(text: str, rng: random.Random) -> str:
    """One number replaced: by an extreme or non-finite value, or scaled by a factor in [0.2, 5]."""
    found = list(NUMBER.finditer(text))
    if not found:
        return text
    m = rng.choice(found)
    if rng.random() < 0.5:
        new = rng.choice(EXTREMES)
    else:
        try:
            new = repr(float(m.group()) * rng.uniform(0.2, 5.0))
        except ValueError:
            new = m.group()
    return text[: m.start()] + new + text[m.end() :]


def _shear(text: str, rng: random.Random) -> str:
    """Add a large multiple of one lattice row to another (POSCAR) or squeeze a CIF angle towards 0 or 180°."""
    lines = text.splitlines()
    if "_cell_angle_" in text:
        return re.sub(
            r"(_cell_angle_\w+\s+)\S+",
            lambda m: m.group(1) + rng.choice(["0.5", "179.5", "1e-4"]),
            text,
            count=1,
        )
    if len(lines) > 4:
        try:
            a = [float(x) for x in lines[2].split()[:3]]
            c = [float(x) for x in lines[4].split()[:3]]
        except (ValueError, IndexError):
            return text
        f = rng.choice([50.0, 1e3, 1e6, -200.0])
        lines[4] = " ".join(f"{ci + f * ai:.10f}" for ai, ci in zip(a, c, strict=False))
    return "\n".join(lines) + "\n"


def _symbol(text: str, rng: random.Random) -> str:
    found = list(re.finditer(r"\b(?:Si|C|Sr|O|B|N|Al|P|K|In|Se|Cl|F|Ne|[A-Z][a-z]?)\b", text))
    if not found:
        return text
    m = rng.choice(found)
    return text[: m.start()] + rng.choice(SYMBOLS) + text[m.end() :]


def mutate(text: str, rng: random.Random) -> str:
    """One to three random mutations of ``text`` (half of them change a number)."""
    for _ in range(rng.choice((1, 1, 2, 3))):
        lines = text.splitlines(keepends=True)
        kind = rng.randrange(14)
        if kind >= 10 or kind in (0, 1):
            text = _replace_number(text, rng)
        elif kind == 3 and lines:
            del lines[rng.randrange(len(lines))]
            text = "".join(lines)
        elif kind == 4 and lines:
            i = rng.randrange(len(lines))
            lines[i:i] = [lines[i]] * rng.choice([1, 2, 50])
            text = "".join(lines)
        elif kind == 5 and len(lines) > 1:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        elif kind == 6 and text:
            text = text[: rng.randrange(len(text))]
        elif kind == 7 and text:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice(JUNK) * rng.choice([1, 3]) + text[i:]
        elif kind == 8:
            text = _symbol(text, rng)
        else:
            text = _shear(text, rng)
    return text


# ------------------------------------------------------------------------------------------------------
# the named hostile inputs of issue 11
# ------------------------------------------------------------------------------------------------------
SIC_CIF = (ROOT / "examples" / "SiC.cif").read_text()
ALP_POSCAR = (ROOT / "examples" / "AlP.POSCAR").read_text()


def cif_with_a(a: str) -> str:
    """SiC with ``_cell_length_a`` replaced (e.g. ``1e30``, ``1e6``, ``600``, ``nan``)."""
    return re.sub(r"(_cell_length_a\s+)\S+", lambda m: m.group(1) + a, SIC_CIF, count=1)


def poscar_with(line: int, new: str) -> str:
    """AlP's POSCAR with line ``line`` (0-based) replaced."""
    lines = ALP_POSCAR.splitlines()
    lines[line] = new
    return "\n".join(lines) + "\n"


def sheared_poscar(factor: float = 1e3) -> str:
    """AlP with its third cell vector sheared by ``factor`` × the first: the same crystal in a skewed cell for
    moderate factors, an unbounded neighbour search for extreme ones."""
    lines = ALP_POSCAR.splitlines()
    a = [float(x) for x in lines[2].split()]
    c = [float(x) for x in lines[4].split()]
    lines[4] = " ".join(f"{ci + factor * ai:.10f}" for ai, ci in zip(a, c, strict=True))
    return "\n".join(lines) + "\n"


def flat_poscar() -> str:
    """A 1-atom Si cell whose third vector lies almost in the plane of the other two (spacing 0.1 Å)."""
    return "Si flat\n1.0\n5 0 0\n0 5 0\n2.5 2.5 0.1\nSi\n1\ndirect\n0 0 0\n"


HOSTILE = {
    # name → (filename, text, phrase of the one-line error)
    "a_1e30": ("huge_a.cif", cif_with_a("1e30"), "volume per atom"),
    "a_1e6": ("a_1e6.cif", cif_with_a("1e6"), "volume per atom"),
    "a_600": ("a_600.cif", cif_with_a("600"), "volume per atom 2034 Å³ is above 500"),
    "a_nan": ("nan.cif", cif_with_a("nan"), "not finite"),
    "coordinate_inf": ("POSCAR_inf", poscar_with(8, "inf 0.75 0.75 P"), "not finite"),
    "coordinate_nan": ("POSCAR_nan", poscar_with(9, "0 nan 0 Al"), "not finite"),
    # fuzz seed 20261131, input m0135: a coordinate of 8.7e13 made CHGNet's neighbour search run out of memory
    # fuzz seed 20261129: an atom with no neighbour within CHGNet's 6 Å graph cutoff (here: Ne in a 7 Å cube)
    "isolated_atom": (
        "POSCAR_isolated",
        "Ne\n1.0\n7 0 0\n0 7 0\n0 0 7\nNe\n1\ndirect\n0 0 0 Ne\n",
        "no chgnet-0.3.0 features: CHGNet failed",
    ),
    "coordinate_far": ("POSCAR_far", poscar_with(9, "0.25 0.25 8.73064e13 Al"), "more than 100 cells away"),
    "lattice_inf": ("POSCAR_latinf", poscar_with(2, "inf 0 0"), "not finite"),
    "sheared_1e6": ("POSCAR_sheared", sheared_poscar(1e6), "cell vector"),
    "flat_cell": ("POSCAR_flat", flat_poscar(), "cell vector of 0.2 Å is shorter than 1.0 Å"),
    "scale_1e30": ("POSCAR_scale", poscar_with(1, "1e30"), "volume per atom"),
    "scale_tiny": ("POSCAR_tiny", poscar_with(1, "1e-6"), "not 3-D periodic"),
    "lone_atom_30A": (
        "POSCAR_lone",
        "Si\n1.0\n30 0 0\n0 30 0\n0 0 30\nSi\n1\ndirect\n0 0 0\n",
        "volume per atom",
    ),
}
