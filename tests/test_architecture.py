"""The flow of imports (docs/architecture.md), checked on the source: imports only go downward.

structures, spectra, targets → engine → data → campaign; data → graphs → nn → training → evaluation → study;
training, evaluation → pretrained → predict → service, cli. Engine and campaign never import torch; pretrained
imports nothing from predict, service or cli; the grid size is written only in targets.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "optiladder"

#: stage → the stages it may NOT import (anything later in the flow)
FORBIDDEN: dict[str, set[str]] = {
    "targets": {"engine", "data", "campaign", "graphs", "nn", "training", "evaluation", "study", "pretrained",
                "predict", "service", "cli", "structures"},
    "spectra": {"engine", "data", "campaign", "graphs", "nn", "training", "evaluation", "study", "pretrained",
                "predict", "service", "cli"},
    "structures": {"engine", "data", "campaign", "graphs", "nn", "training", "evaluation", "study", "pretrained",
                   "predict", "service", "cli"},
    "engine": {"data", "campaign", "graphs", "nn", "training", "evaluation", "study", "pretrained", "predict",
               "service", "cli"},
    "data": {"campaign", "graphs", "nn", "training", "evaluation", "study", "pretrained", "predict", "service",
             "cli"},
    "campaign": {"graphs", "nn", "training", "evaluation", "study", "pretrained", "predict", "service", "cli"},
    "graphs": {"campaign", "nn", "training", "evaluation", "study", "pretrained", "predict", "service", "cli"},
    "nn": {"campaign", "training", "evaluation", "study", "pretrained", "predict", "service", "cli"},
    "training": {"campaign", "evaluation", "study", "pretrained", "predict", "service", "cli"},
    "evaluation": {"campaign", "study", "pretrained", "predict", "service", "cli"},
    "study": {"campaign", "pretrained", "predict", "service", "cli"},
    "pretrained": {"campaign", "study", "predict", "service", "cli"},
    "predict": {"campaign", "study", "service", "cli"},
    "viz": {"campaign", "nn", "training", "study", "pretrained", "predict", "service", "cli"},
}  # fmt: skip


def _stage(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, function-level ones included."""
    tree = ast.parse(path.read_text())
    pkg = ["optiladder", *path.relative_to(SRC).parts[:-1]]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out.append((node.lineno, mod))
            if not node.module:  # "from . import x"
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


FILES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_downward(path):
    stage = _stage(path)
    bad = []
    for line, mod in _imports(path):
        parts = mod.split(".")
        if parts[0] == "torch" and stage in (
            "engine",
            "campaign",
            "targets",
            "spectra",
            "structures",
            "data",
        ):
            bad.append((line, mod))
        if parts[0] == "optiladder" and len(parts) > 1 and parts[1] in FORBIDDEN.get(stage, set()):
            bad.append((line, mod))
    assert not bad, f"{path.relative_to(SRC)} imports against the flow: {bad}"


def test_cli_dataset_uses_the_campaign_public_api():
    mods = [m for _, m in _imports(SRC / "cli" / "dataset.py")]
    assert not [m for m in mods if m.startswith("optiladder.campaign.")], mods


def test_grid_size_written_only_in_targets():
    hits = [str(p.relative_to(SRC)) for p in FILES if "2001" in p.read_text() and p.name != "targets.py"]
    assert not hits, hits


def test_graphs_has_no_structure_reader_of_its_own():
    text = (SRC / "graphs.py").read_text()
    assert "cell_arrays" in text and '["lattice"]["matrix"]' not in text


def test_every_package_and_module_has_its_tests_folder():
    tests = Path(__file__).resolve().parent
    names = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {p.stem for p in SRC.glob("*.py") if not p.name.startswith("_")}
    missing = sorted(n for n in names if not (tests / n).is_dir())
    assert not missing, f"no tests/<name>/ for {missing}"
