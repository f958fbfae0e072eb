"""The paper's train / validation / test id lists (bundled, see resources/alexandria/SOURCE.md).

Validation and test materials must never be trained on, at any fidelity (IPA pretraining included):
:func:`check_trainable` is the guard every training entry point calls.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from typing import Literal, get_args

Split = Literal["train", "validation", "test", "none"]
SPLITS: tuple[str, ...] = get_args(Split)
#: splits whose materials may be used for training ("none" = in no published list, free to use)
TRAINABLE: tuple[str, ...] = ("train", "none")


class LeakageError(ValueError):
    """An attempt to train on a validation or test material."""


@lru_cache(maxsize=1)
def split_ids() -> dict[str, frozenset[str]]:
    """``{"train": ids, "validation": ids, "test": ids}`` of the published lists (~9,700 ids)."""
    out = {}
    for name in ("train", "validation", "test"):
        ref = resources.files("optiladder.resources").joinpath(f"alexandria/{name}.txt.gz")
        with ref.open("rb") as fh:
            out[name] = frozenset(gzip.decompress(fh.read()).decode().split())
    return out


def split_of(mat_id: str) -> str:
    """The split of a material id: train, validation, test, or none (in no published list)."""
    for name, ids in split_ids().items():
        if mat_id in ids:
            return name
    return "none"


#: the splits nothing may be trained on, at any level
HELD_OUT = ("validation", "test")


def held_out(mat_id: str, split: str | None = None) -> str | None:
    """The held-out split of a material (its own recorded ``split`` or the published lists'), or None if it
    may be trained on."""
    for s in (split, split_of(mat_id)):
        if s in HELD_OUT:
            return s
    return None


def check_trainable(mat_ids, *, context: str = "training") -> None:
    """Raise :class:`LeakageError` if any id is in the validation or test list."""
    ids = split_ids()
    bad = sorted(set(mat_ids) & frozenset().union(*(ids[s] for s in HELD_OUT)))
    if bad:
        raise LeakageError(
            f"{context}: {len(bad)} validation/test material(s) may not be trained on "
            f"(e.g. {', '.join(bad[:3])})"
        )


def check_split_names(names) -> tuple[str, ...]:
    """Validate split names given to a training entry point; only ``train`` and ``none`` may be trained on."""
    names = tuple(names)
    unknown = [n for n in names if n not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; known: {SPLITS}")
    bad = [n for n in names if n not in TRAINABLE]
    if bad:
        raise LeakageError(f"split(s) {bad} are held out and may not be trained on")
    return names
