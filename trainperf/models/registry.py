"""Named model sizes: each family keeps a registry of frozen config dataclasses by flavor name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

ConfigT = TypeVar("ConfigT")


def from_registry(
    registry: Mapping[str, ConfigT], name: str, family: str, **overrides: object
) -> ConfigT:
    """A fresh copy of `registry`'s entry `name`, with `overrides` applied; an unknown name or
    field is one error naming the known ones. `family` names the model in those errors."""
    if name not in registry:
        raise ValueError(f"unknown {family} config {name!r}; known: {', '.join(registry)}")
    entry = registry[name]
    fields = [f.name for f in dataclasses.fields(entry)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {type(entry).__name__} field(s) {', '.join(unknown)}; valid: "
            f"{', '.join(fields)}"
        )
    return dataclasses.replace(entry, **overrides)  # type: ignore[type-var]
