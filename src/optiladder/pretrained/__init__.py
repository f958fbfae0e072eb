"""Pretrained OptiMate models shipped inside the package, and the registry that loads them by name.

One folder per model, ``pretrained/<name>/``:

* ``config.json``  — the model class, its module and its constructor arguments (``model.config``), the
  registry format version;
* ``weights.pt``   — the ``state_dict`` (tensors only, stored as float16 to keep the package small; loaded with
  ``torch.load(weights_only=True)`` and cast back to float32);
* ``featurizer.json`` — the :class:`optiladder.graphs.Featurizer` the model was trained with, so inference
  builds graphs exactly as training did;
* ``card.json``    — the model card: task, parent model, training data (sizes, splits, protocol), test metrics,
  date, and the SHA-256 of ``weights.pt``. A weights file whose checksum differs from its card is refused.

Names: ``ipa`` (Im ε̄ at the independent-particle level), ``rpa`` (Im ε̄ in the random-phase approximation,
transfer-learned from ``ipa``) and ``sc`` (the similarity coefficient SC[RPA; IPA] of a material, one value).
Loading needs no network. Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

ModelName = Literal["ipa", "rpa", "sc"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
#: names that existed once and were withdrawn: name → reason (raised as a clear error, never loaded)
RETIRED: dict[str, str] = {}
#: file names inside a model folder
CONFIG_FILE, WEIGHTS_FILE, FEATURIZER_FILE, CARD_FILE = (
    "config.json",
    "weights.pt",
    "featurizer.json",
    "card.json",
)
FORMAT_VERSION = 1


class PretrainedError(RuntimeError):
    """A missing, retired, corrupt or inconsistent pretrained model; ``str(err)`` is ``"<name>: <problem>"``."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


@dataclass
class LoadedModel:
    """A pretrained model ready for inference: the ``torch`` module (eval mode), its featurizer and card."""

    name: str
    model: Any  # optiladder.nn.OptiMate
    featurizer: Any  # optiladder.graphs.Featurizer
    card: dict
    path: Path


def package_dir() -> Path:
    """The folder of the shipped models (``optiladder/pretrained``)."""
    return Path(str(resources.files("optiladder.pretrained")))


def model_dir(name: str, root: str | Path | None = None) -> Path:
    """Folder of model ``name`` under ``root`` (default: the shipped models); raises for unknown/retired names."""
    if name in RETIRED:
        raise PretrainedError(name, f"retired model ({RETIRED[name]})")
    base = Path(root) if root is not None else package_dir()
    if name not in MODEL_NAMES and not (base / name / CARD_FILE).exists():
        raise PretrainedError(name, f"unknown pretrained model; known: {', '.join(MODEL_NAMES)}")
    return base / name


def available(root: str | Path | None = None) -> list[str]:
    """Names of the models present (with a card) under ``root`` (default: the shipped models)."""
    base = Path(root) if root is not None else package_dir()
    return sorted(p.name for p in base.iterdir() if (p / CARD_FILE).is_file()) if base.is_dir() else []


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path, name: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PretrainedError(name, f"{path.name} missing in {path.parent}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise PretrainedError(name, f"{path.name} unreadable ({type(exc).__name__}: {exc})") from None


def read_card(name: str, root: str | Path | None = None) -> dict:
    """The model card of ``name`` (a dict, see the module docstring)."""
    return _read_json(model_dir(name, root) / CARD_FILE, name)


def verify(name: str, root: str | Path | None = None) -> dict:
    """Check that model ``name`` is complete and that ``weights.pt`` matches the SHA-256 in its card.

    Returns the card. Raises :class:`PretrainedError` (one line) for a missing file, a checksum mismatch or a
    featurizer that differs from the one the card names.
    """
    d = model_dir(name, root)
    if not d.is_dir():
        raise PretrainedError(name, f"not installed (no folder {d}); run `optiladder pretrained rebuild`")
    card = read_card(name, root)
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        raise PretrainedError(name, f"{WEIGHTS_FILE} missing in {d}")
    expected = card.get("weights", {}).get("sha256")
    if not expected:
        raise PretrainedError(name, "card.json has no weights.sha256")
    actual = sha256_file(weights)
    if actual != expected:
        raise PretrainedError(
            name,
            f"{WEIGHTS_FILE} checksum {actual[:12]}… does not match its card ({expected[:12]}…); the file is "
            "corrupt or was changed — refusing to load it (reinstall or run `optiladder pretrained rebuild`)",
        )
    from ..graphs import Featurizer

    feat = Featurizer.from_dict(_read_json(d / FEATURIZER_FILE, name))
    want = card.get("featurizer_hash")
    if want and feat.hash() != want:
        raise PretrainedError(name, f"featurizer.json hash {feat.hash()} does not match its card ({want})")
    return card


def load_model(name: str, *, root: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load pretrained model ``name`` (``ipa``, ``rpa`` or ``sc``) for inference, with no network access.

    The weights are verified against the card's SHA-256 first (:func:`verify`), then read with
    ``torch.load(weights_only=True)`` into ``OptiMate(**config)`` with ``strict=True`` and cast to float32;
    the model is returned in eval mode.
    """
    import torch

    from ..graphs import Featurizer
    from ..nn import MODEL_CLASSES

    card = verify(name, root)
    d = model_dir(name, root)
    config = _read_json(d / CONFIG_FILE, name)
    cls_name = config.get("class")
    if cls_name not in MODEL_CLASSES:
        raise PretrainedError(name, f"config.json names unknown model class {cls_name!r}")
    try:
        model = MODEL_CLASSES[cls_name](**config["kwargs"])
        state = torch.load(d / WEIGHTS_FILE, map_location=device, weights_only=True)
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PretrainedError(name, f"weights do not fit config.json ({msg[:200]})") from None
    model.to(device).eval()
    feat = Featurizer.from_dict(_read_json(d / FEATURIZER_FILE, name))
    return LoadedModel(name=name, model=model, featurizer=feat, card=card, path=d)


def save_model(
    out: str | Path,
    model: Any,
    featurizer: Any,
    card: dict,
    *,
    dtype: str = "float16",
) -> Path:
    """Write a model folder (config, weights, featurizer, card with the weights' SHA-256) to ``out``.

    ``dtype`` is the storage type of floating-point tensors (``float16`` halves the size; the model runs in
    float32 after loading). Files are written to temporary names and renamed, the card last, so a crash never
    leaves a card that vouches for other weights.
    """
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tdtype = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    state = {
        k: (v.detach().to("cpu", tdtype) if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    config = {
        "format_version": FORMAT_VERSION,
        "class": type(model).__name__,
        "module": type(model).__module__,
        "kwargs": model.config,
    }

    def _write_text(path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    tmp = out / f".{WEIGHTS_FILE}.tmp"
    torch.save(state, tmp)
    tmp.replace(out / WEIGHTS_FILE)
    _write_text(out / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
    _write_text(out / FEATURIZER_FILE, json.dumps(featurizer.to_dict(), indent=1) + "\n")
    card = dict(card)
    card["weights"] = {
        "file": WEIGHTS_FILE,
        "sha256": sha256_file(out / WEIGHTS_FILE),
        "dtype": dtype,
        "bytes": (out / WEIGHTS_FILE).stat().st_size,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    card["featurizer_hash"] = featurizer.hash()
    _write_text(out / CARD_FILE, json.dumps(card, indent=1) + "\n")
    return out


__all__ = [
    "MODEL_NAMES",
    "RETIRED",
    "LoadedModel",
    "ModelName",
    "PretrainedError",
    "available",
    "load_model",
    "model_dir",
    "read_card",
    "save_model",
    "sha256_file",
    "verify",
]
