"""The one model format: a trained model (one network or an ensemble), its featurizer, target and card.

A :class:`Model` is what training returns, what the study and ``pretrained/`` save, and what the predictor
loads. On disk it is a folder::

    config.json      {"format": "optiladder.model", "format_version": 2, "class": "OptiMate", "kwargs": {...},
                      "members": K}
    weights.pt       the K members' state dicts in one flat dict of tensors ("<k>.<parameter>"), read with
                     torch.load(weights_only=True); floating tensors stored as float16 or float32
    featurizer.json  the featurizer spec {"name": ..., "params": {...}} (graphs at inference = graphs in training)
    target.json      the target spec (optiladder.targets.TargetSpec): levels, kind, grid, components, loss,
                     post-processing
    card.json        the model card (:func:`make_card`, schema :data:`CARD_SCHEMA`), with the SHA-256 of every
                     other file of the folder ("files") and the model id (:func:`model_id`, a hash of those)

Loading (:func:`load_model_dir`) verifies the checksums of every file, refuses files the card does not
list, rebuilds the networks strictly, and checks that config, target and featurizer agree; every failure is a
one-line :class:`PretrainedError` naming the file. Importing this module does not import torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..targets import TargetError, TargetSpec

FORMAT = "optiladder.model"
FORMAT_VERSION = 2
#: version of the card layout written by :func:`make_card`
CARD_SCHEMA = 1
CONFIG_FILE, WEIGHTS_FILE, FEATURIZER_FILE, TARGET_FILE, CARD_FILE = (
    "config.json",
    "weights.pt",
    "featurizer.json",
    "target.json",
    "card.json",
)
#: files every model folder holds besides the card (all covered by the card's checksums)
MODEL_FILES: tuple[str, ...] = (CONFIG_FILE, WEIGHTS_FILE, FEATURIZER_FILE, TARGET_FILE)
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32", "bfloat16")


class PretrainedError(RuntimeError):
    """A missing, corrupt, tampered or inconsistent model; ``str(err)`` is one line ``"<file or name>: <problem>"``."""

    def __init__(self, name: str | Path, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


#: the old name of the error of a bad checkpoint
CheckpointError = PretrainedError


# --------------------------------------------------------------------------------------------------
# hashes
# --------------------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ids_sha256(ids: Sequence[str]) -> str:
    """sha256 (hex) of the sorted, distinct material ids joined by newlines (training/test sets in cards)."""
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()


def model_id(files: dict[str, str]) -> str:
    """The id of a saved model: sha256 (hex, 16 characters) of its files' names and SHA-256s.

    Two folders with the same config, weights, featurizer and target have the same id, whatever their card
    says; the id changes with any of those files.
    """
    text = json.dumps({k: files[k] for k in sorted(files)}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Library versions recorded in every card."""
    import torch
    import torch_geometric

    from .. import __version__ as ol_version

    return {
        "python": platform.python_version(),
        "optiladder": str(ol_version),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "numpy": np.__version__,
    }


def _plain(obj: Any) -> Any:
    """JSON round trip: numpy scalars → float/int, tuples → lists."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# --------------------------------------------------------------------------------------------------
# the card
# --------------------------------------------------------------------------------------------------
def make_card(
    *,
    name: str,
    target: TargetSpec,
    train_ids: Sequence[str] = (),
    version: str | None = None,
    full_name: str = "",
    description: str = "",
    data: dict[str, Any] | None = None,
    n_validation: int = 0,
    train_splits: Sequence[str] = (),
    trainable: Sequence[str] = ("all",),
    settings: dict[str, Any] | None = None,
    fit: dict[str, Any] | None = None,
    val_loss: float | None = None,
    parent: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A model card of schema :data:`CARD_SCHEMA` (plain JSON types).

    Keys: ``schema``, ``name``, ``version`` (default: the UTC date ``vYYYY.MM.DD``), ``full_name``,
    ``description``, ``created`` (UTC ISO 8601), ``target`` / ``kind`` / ``levels`` (from the target spec),
    ``data`` (free-form: source, protocol, numerics, record counts), ``training`` (``train_ids`` sorted,
    ``train_ids_sha256``, ``n_train``, ``n_validation``, ``train_splits``, ``trainable`` parameter groups,
    ``settings``, ``fit``, ``val_loss``, ``parent`` ``{"name", "id", "target", "train_ids_sha256"}`` or None,
    ``selection`` among seeds or None), ``metrics`` (see :func:`optiladder.evaluation.model_metrics`),
    ``versions``. :func:`save_model` adds ``members``, ``n_parameters``, ``weights_dtype``, ``files`` and ``id``.
    """
    now = _dt.datetime.now(_dt.UTC)
    ids = sorted(set(train_ids))
    card = {
        "schema": CARD_SCHEMA,
        "name": name,
        "version": version or f"v{now:%Y.%m.%d}",
        "full_name": full_name or name,
        "description": description,
        "created": now.isoformat(timespec="seconds"),
        "target": target.name,
        "kind": target.kind,
        "levels": list(target.levels),
        "data": dict(data or {}),
        "training": {
            "train_ids": ids,
            "train_ids_sha256": ids_sha256(ids),
            "n_train": len(ids),
            "n_validation": int(n_validation),
            "train_splits": list(train_splits),
            "trainable": list(trainable),
            "settings": dict(settings or {}),
            "fit": dict(fit or {}),
            "val_loss": val_loss,
            "parent": parent,
            "selection": selection,
        },
        "metrics": dict(metrics or {}),
        "versions": versions(),
    }
    card.update(extra or {})
    return _plain(card)


def parent_ref(parent: Model) -> dict[str, Any]:
    """How a card names the model it was transferred from."""
    return {
        "name": parent.card.get("name", ""),
        "version": parent.card.get("version"),
        "id": parent.card.get("id") or parent.state_id(),
        "target": parent.target.name,
        "train_ids_sha256": parent.card.get("training", {}).get("train_ids_sha256"),
    }


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------
@dataclass
class Model:
    """A trained model: K ≥ 1 member networks of one architecture, their featurizer, target and card.

    ``nets``: ``torch.nn.Module`` list (each records its constructor arguments in ``.config`` and declares its
    loss); ``featurizer``: :class:`optiladder.graphs.Featurizer`; ``target``:
    :class:`optiladder.targets.TargetSpec`; ``card``: dict (:func:`make_card`); ``path``: folder it was
    loaded from. An ensemble is a model with K > 1: one card, one forward for all members
    (:meth:`forward` returns the mean and the per-output spread).
    """

    nets: list[Any]
    featurizer: Any
    target: TargetSpec
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.nets:
            raise ValueError("a model needs at least one network")
        configs = {json.dumps(_plain(n.config), sort_keys=True) for n in self.nets}
        if len(configs) != 1:
            raise ValueError("the members of an ensemble must share one architecture")
        out_dim = self.nets[0].config.get("out_dim")
        if out_dim != self.target.out_dim:
            raise ValueError(
                f"the network outputs {out_dim} values, target {self.target.name} has {self.target.out_dim}"
            )

    # ---- identity ------------------------------------------------------------------------------
    @property
    def net(self):
        """The first (for K = 1 the only) member network."""
        return self.nets[0]

    @property
    def members(self) -> int:
        return len(self.nets)

    @property
    def name(self) -> str:
        return str(self.card.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.card.get("version", ""))

    @property
    def id(self) -> str:
        """The saved model's id (:func:`model_id`); empty for a model never saved."""
        return str(self.card.get("id", ""))

    def state_id(self) -> str:
        """sha256 (16 hex) of the members' weights (names, dtypes, shapes, bytes): the id of an unsaved model."""
        h = hashlib.sha256()
        for k, net in enumerate(self.nets):
            state = net.state_dict()
            for name in sorted(state):
                t = state[name].detach().cpu().contiguous()
                h.update(f"{k}.{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                h.update(t.float().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
        return h.hexdigest()[:16]

    # ---- torch ---------------------------------------------------------------------------------
    def eval(self) -> Model:
        for n in self.nets:
            n.eval()
        return self

    def to(self, device: str) -> Model:
        for n in self.nets:
            n.to(device)
        return self

    def forward(self, batch) -> tuple[Any, Any]:
        """Raw output of every member on one batch: ``(mean, spread)``, each ``[n_graphs, out_dim]``.

        ``spread`` is the standard deviation over the K members (zeros for a single network).
        """
        import torch

        outs = torch.stack([n(batch) for n in self.nets])  # [K, n, out]
        mean = outs.mean(dim=0)
        spread = outs.std(dim=0, unbiased=False) if len(self.nets) > 1 else torch.zeros_like(mean)
        return mean, spread

    def __call__(self, batch):
        """Mean raw output ``[n_graphs, out_dim]``."""
        return self.forward(batch)[0] if len(self.nets) > 1 else self.nets[0](batch)

    def embed(self, batch):
        """The first member's pooled crystal embedding ``[n_graphs, embedding_dim]``."""
        return self.nets[0].embed(batch)

    def finish(self, raw: np.ndarray, postprocess: Any = None) -> np.ndarray:
        """Raw output ``[n, out_dim]`` → the reported prediction (the target's post-processing by default)."""
        return self.target.finish(raw, postprocess)

    def predict_graphs(
        self, graphs: Sequence[Any], *, batch_size: int = 256, postprocess: Any = None, raw: bool = False
    ) -> np.ndarray:
        """Predictions ``[n, out_dim]`` (float64) for :class:`optiladder.graphs.Graph` objects, in order.

        ``raw=True``: the network output as is; else post-processed (``postprocess`` default: the target's).
        """
        import torch

        from ..graphs import collate

        self.eval()
        outs = []
        with torch.inference_mode():
            for start in range(0, len(graphs), batch_size):
                batch = collate(graphs[start : start + batch_size])
                outs.append(self(batch).double().cpu().numpy())
        y = np.concatenate(outs) if outs else np.zeros((0, self.target.out_dim))
        return y if raw else self.finish(y, postprocess)

    def num_parameters(self) -> int:
        return int(sum(p.numel() for n in self.nets for p in n.parameters()))


# --------------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save_model(out: str | Path, model: Model, *, dtype: str = "float32") -> Path:
    """Write ``model`` to the folder ``out`` (created; files of an earlier model there are replaced).

    ``dtype``: storage type of floating tensors (``float16`` halves the size; loading casts to float32). Files
    are written under temporary names and renamed, the card last, so a crash never leaves a card vouching for
    other files. Returns ``out``; ``model.card`` gets ``files`` and ``id``.
    """
    import torch

    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tdtype = getattr(torch, dtype)
    state = {}
    for k, net in enumerate(model.nets):
        for name, v in net.state_dict().items():
            v = v.detach().cpu()
            state[f"{k}.{name}"] = v.to(tdtype) if v.is_floating_point() else v
    net = model.net
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": type(net).__name__,
        "kwargs": _plain(net.config),
        "members": len(model.nets),
    }
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    torch.save(state, tmp)
    tmp.replace(out / WEIGHTS_FILE)
    _write_text(out / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
    _write_text(out / FEATURIZER_FILE, json.dumps(_plain(model.featurizer.spec()), indent=1) + "\n")
    _write_text(out / TARGET_FILE, json.dumps(model.target.to_dict(), indent=1) + "\n")
    files = {f: sha256_file(out / f) for f in MODEL_FILES}
    card = dict(model.card)
    card.update(
        {
            "members": len(model.nets),
            "n_parameters": model.num_parameters(),
            "weights_dtype": dtype,
            "files": files,
            "id": model_id(files),
        }
    )
    card = _plain(card)
    _write_text(out / CARD_FILE, json.dumps(card, indent=1) + "\n")
    model.card, model.path = card, out
    return out


def write_card(folder: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a saved model's card (e.g. new test metrics); the files it vouches for must be unchanged."""
    folder = Path(folder)
    old = read_card(folder)
    card = _plain({**card, "files": old["files"], "id": old["id"]})
    _write_text(folder / CARD_FILE, json.dumps(card, indent=1) + "\n")
    return card


# --------------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PretrainedError(path, "missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PretrainedError(path, f"unreadable JSON ({type(exc).__name__}: {exc})") from None


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a model folder (no verification beyond reading it)."""
    folder = Path(folder)
    card = _read_json(folder / CARD_FILE)
    if not isinstance(card, dict) or card.get("schema") != CARD_SCHEMA:
        raise PretrainedError(folder / CARD_FILE, f"not a model card of schema {CARD_SCHEMA}")
    if not isinstance(card.get("files"), dict) or not card.get("id"):
        raise PretrainedError(folder / CARD_FILE, "has no file checksums or no model id (an unsaved card?)")
    return card


def verify_dir(folder: str | Path) -> dict[str, Any]:
    """Check a model folder: the card lists exactly the folder's files, and every checksum and the id match.

    Returns the card; raises :class:`PretrainedError` naming the first bad file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedError(folder, "no such model folder")
    card = read_card(folder)
    files: dict[str, str] = card["files"]
    for f in MODEL_FILES:
        if f not in files:
            raise PretrainedError(folder / CARD_FILE, f"lists no checksum for {f}")
    present = {p.name for p in folder.iterdir() if not p.name.startswith(".")} - {CARD_FILE}
    for extra in sorted(present - set(files)):
        raise PretrainedError(folder / extra, "is not covered by the card's checksums (unexpected file)")
    for f, want in files.items():
        path = folder / f
        if not path.is_file():
            raise PretrainedError(path, "missing")
        got = sha256_file(path)
        if got != want:
            raise PretrainedError(
                path,
                f"checksum {got[:12]}… does not match its card ({str(want)[:12]}…); the file is corrupt or was "
                "changed — refusing to load it",
            )
    if model_id(files) != card["id"]:
        raise PretrainedError(folder / CARD_FILE, f"model id {card['id']} does not match its file checksums")
    return card


def load_model_dir(folder: str | Path, *, device: str = "cpu") -> Model:
    """Load a model folder written by :func:`save_model` (verified first, see :func:`verify_dir`)."""
    import torch

    from ..graphs import featurizer_from_spec
    from ..nn import MODEL_CLASSES

    folder = Path(folder)
    card = verify_dir(folder)
    config = _read_json(folder / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PretrainedError(folder / CONFIG_FILE, "not an optiladder model config")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise PretrainedError(
            folder / CONFIG_FILE, f"format version {config['format_version']} is newer than this code"
        )
    cls = MODEL_CLASSES.get(config.get("class"))
    if cls is None:
        raise PretrainedError(folder / CONFIG_FILE, f"unknown model class {config.get('class')!r}")
    try:
        target = TargetSpec.from_dict(_read_json(folder / TARGET_FILE))
    except TargetError as exc:
        raise PretrainedError(folder / TARGET_FILE, str(exc)) from None
    try:
        featurizer = featurizer_from_spec(_read_json(folder / FEATURIZER_FILE))
        featurizer.check_available()  # e.g. a foundation model's package
    except ValueError as exc:
        raise PretrainedError(folder / FEATURIZER_FILE, str(exc)) from None
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad or malicious file
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise PretrainedError(
            folder / WEIGHTS_FILE, f"not a plain tensor file ({type(exc).__name__}: {msg})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(folder / WEIGHTS_FILE, "does not hold a flat dict of tensors")
    k_members = int(config.get("members", 1))
    nets = []
    for k in range(k_members):
        prefix = f"{k}."
        sub = {
            n[len(prefix) :]: (v.float() if v.is_floating_point() else v)
            for n, v in state.items()
            if n.startswith(prefix)
        }
        try:
            net = cls(**config["kwargs"])
            net.load_state_dict(sub, strict=True)
        except (RuntimeError, TypeError, KeyError, ValueError) as exc:
            msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise PretrainedError(
                folder / WEIGHTS_FILE, f"member {k} does not fit config.json ({msg})"
            ) from None
        nets.append(net.to(device).eval())
    if len(state) != sum(len(n.state_dict()) for n in nets):
        raise PretrainedError(
            folder / WEIGHTS_FILE,
            f"holds tensors of more than the {k_members} member(s) config.json declares",
        )
    net_cfg = nets[0].config
    if net_cfg.get("loss", target.loss) != target.loss:
        raise PretrainedError(
            folder / CONFIG_FILE, f"loss {net_cfg.get('loss')!r} differs from target.json's {target.loss!r}"
        )
    if (net_cfg.get("node_dim"), net_cfg.get("edge_dim")) != (featurizer.node_dim, featurizer.edge_dim):
        raise PretrainedError(folder / FEATURIZER_FILE, "node/edge feature sizes differ from config.json")
    try:
        return Model(nets, featurizer, target, card, folder)
    except ValueError as exc:
        raise PretrainedError(folder / TARGET_FILE, str(exc)) from None
