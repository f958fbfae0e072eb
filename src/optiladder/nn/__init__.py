"""Neural networks: the OptiMate graph attention network, the CGAT alternative, and their parts (one layer per file).

``OptiMate(**config)`` rebuilds a model from its recorded ``config``; :func:`spectrum_model` and
:func:`scalar_model` give the two head variants. Importing this package imports torch.
"""

from __future__ import annotations

from .cgat import CGAT, cgat_model
from .gatv2 import GATv2
from .heads import Head
from .mlp import MLP
from .optimate import (
    BODY_MODULES,
    LOSSES,
    PARAMETER_GROUPS,
    TRAINABLE_CHOICES,
    OptiMate,
    Trainable,
    scalar_model,
    spectrum_model,
)
from .pooling import AttentionPool

MODEL_CLASSES: dict[str, type] = {"OptiMate": OptiMate, "CGAT": CGAT}

__all__ = [
    "BODY_MODULES",
    "LOSSES",
    "PARAMETER_GROUPS",
    "MODEL_CLASSES",
    "MLP",
    "TRAINABLE_CHOICES",
    "AttentionPool",
    "CGAT",
    "GATv2",
    "Head",
    "OptiMate",
    "Trainable",
    "cgat_model",
    "scalar_model",
    "spectrum_model",
]
