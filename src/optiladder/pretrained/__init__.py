"""Pretrained models shipped inside the package, and the registry that loads them by name and version.

Every model is a folder in the one model format (:mod:`optiladder.training.model`: ``config.json``,
``weights.pt``, ``featurizer.json``, ``target.json`` and ``card.json`` with the checksums of all of them).
The shipped ones live in ``pretrained/<name>/<version>/``; several versions of a name coexist.
:func:`load_model` takes the newest version of a name (by the card's ``created`` time) unless a version
string pins one, or loads a model folder given as a path.

Names: ``ipa`` (Im ε̄ at the independent-particle level), ``rpa`` (Im ε̄ in the random-phase approximation,
transfer-learned from ``ipa``) and ``sc`` (the similarity coefficient SC[RPA; IPA] of a material, one value);
what each predicts is in its ``target.json``, not in its name. Loading needs no network. Importing this module
does not import torch. This package imports nothing from ``predict``, ``service`` or ``cli``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from ..targets import LEVELS
from ..training.model import (
    CARD_FILE,
    Model,
    PretrainedError,
    load_model_dir,
    save_model,
    sha256_file,
    verify_dir,
)
from ..training.model import (
    read_card as read_card_dir,
)

log = logging.getLogger(__name__)

#: the models shipped with the package
MODEL_NAMES: tuple[str, ...] = (*LEVELS, "sc")
ModelName = str
#: names that existed once and were withdrawn: name → reason (raised as a clear error, never loaded)
RETIRED: dict[str, str] = {}


def package_dir() -> Path:
    """The folder of the shipped models (``optiladder/pretrained``)."""
    return Path(str(resources.files("optiladder.pretrained")))


def _base(root: str | Path | None) -> Path:
    return Path(root) if root is not None else package_dir()


def _is_model_dir(path: Path) -> bool:
    return (path / CARD_FILE).is_file()


def versions(name: str, root: str | Path | None = None) -> list[str]:
    """The versions of model ``name`` under ``root`` (default: the shipped models), oldest first."""
    d = _base(root) / name
    if not d.is_dir():
        return []
    found = []
    for sub in d.iterdir():
        if sub.is_dir() and _is_model_dir(sub):
            try:
                card = read_card_dir(sub)
            except PretrainedError as exc:
                log.warning("%s", exc)
                continue
            found.append((str(card.get("created", "")), sub.name))
    return [v for _, v in sorted(found)]


def model_dir(name: str, version: str | None = None, root: str | Path | None = None) -> Path:
    """Folder of model ``name`` (newest version unless ``version``); raises for unknown or retired names."""
    if name in RETIRED:
        raise PretrainedError(name, f"retired model ({RETIRED[name]})")
    base = _base(root)
    vs = versions(name, root)
    if not vs:
        if name not in MODEL_NAMES:
            known = ", ".join(sorted(set(MODEL_NAMES) | set(available(root))))
            raise PretrainedError(name, f"unknown pretrained model; known: {known}")
        raise PretrainedError(
            name, f"not installed (no model folder under {base / name}); run `optiladder pretrained rebuild`"
        )
    if version is None:
        return base / name / vs[-1]
    if version not in vs:
        raise PretrainedError(name, f"no version {version!r}; installed: {', '.join(vs)}")
    return base / name / version


def available(root: str | Path | None = None) -> list[str]:
    """Names of the models present (at least one version) under ``root`` (default: the shipped models)."""
    base = _base(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and versions(p.name, root))


def resolve(name_or_path: str | Path, version: str | None = None, root: str | Path | None = None) -> Path:
    """The model folder meant by a registry name (a bare name such as ``rpa``) or a path (a ``Path`` or a string
    with ``/``: a model folder, or a name folder holding versions)."""
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or "/" in str(name_or_path):
        if _is_model_dir(path):
            if version is not None and path.name != version:
                raise PretrainedError(path, f"is version {path.name}, not {version}")
            return path
        if path.is_dir():
            return model_dir(path.name, version, path.parent)
        raise PretrainedError(path, "no such model folder")
    return model_dir(str(name_or_path), version, root)


def read_card(name: str | Path, version: str | None = None, root: str | Path | None = None) -> dict:
    """The model card of a model (name or path; newest version unless ``version``)."""
    return read_card_dir(resolve(name, version, root))


def verify(name: str | Path, version: str | None = None, root: str | Path | None = None) -> dict:
    """Check every file of a model against its card's checksums (see :func:`~optiladder.training.model.verify_dir`);
    returns the card, raises :class:`PretrainedError` naming the bad file."""
    return verify_dir(resolve(name, version, root))


def load_model(
    name_or_path: str | Path,
    version: str | None = None,
    *,
    root: str | Path | None = None,
    device: str = "cpu",
) -> Model:
    """Load a model for inference (eval mode, float32, no network access): a registry name (``ipa``, ``rpa``,
    ``sc``; newest version unless ``version`` pins one) or a model folder. Every file is checksum-verified
    first; any failure raises a one-line :class:`PretrainedError` naming the file."""
    return load_model_dir(resolve(name_or_path, version, root), device=device)


def install(model: Model, root: str | Path | None = None, *, dtype: str = "float16") -> Path:
    """Save ``model`` as ``<root>/<card name>/<card version>/`` (default root: the shipped models)."""
    out = _base(root) / model.name / model.version
    return save_model(out, model, dtype=dtype)


__all__ = [
    "MODEL_NAMES",
    "RETIRED",
    "Model",
    "ModelName",
    "PretrainedError",
    "available",
    "install",
    "load_model",
    "model_dir",
    "package_dir",
    "read_card",
    "resolve",
    "save_model",
    "sha256_file",
    "verify",
    "versions",
]
