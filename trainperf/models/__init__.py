"""Model families, one folder each (``llama/``, ``flux/``, ``gpt_oss/``), and what they share:
the family record (`family.py`), sharded safetensors checkpoints (`checkpoint.py`), LoRA
adapters for any ``nn.Linear`` (`lora.py`) and hub downloads (`hub.py`).

A benchmark spec names its family; `get_family` imports it on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainperf.models.family import ModelFamily

FAMILIES = ("llama", "flux", "gpt_oss")
"""The folders under models/ that hold a family (each with a FAMILY record)."""


def get_family(name: str) -> ModelFamily:
    """The family record of ``models/<name>``; ValueError naming the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return importlib.import_module(f"trainperf.models.{name}").FAMILY


def find_flavor(flavor: str) -> tuple[ModelFamily, Any]:
    """(family, model config) of a size registry name of any family."""
    known = []
    for name in FAMILIES:
        family = get_family(name)
        if flavor in family.configs:
            return family, family.configs[flavor]
        known += list(family.configs)
    raise ValueError(f"unknown model {flavor!r}; known: {', '.join(known)}")
