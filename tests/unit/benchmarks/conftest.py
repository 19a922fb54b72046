"""Reading the official compliance YAML of mlperf_logging, for the benchmark-constant tests."""

import math
from pathlib import Path

import mlperf_logging
import pytest
import yaml

CHECKER = Path(mlperf_logging.__file__).parent / "compliance_checker"


def _closed_rules(benchmark: str, ruleset: str) -> dict:
    text = (CHECKER / f"training_{ruleset}" / f"closed_{benchmark}.yaml").read_text()
    return {r["KEY"]["NAME"]: r["KEY"] for r in yaml.safe_load(text) if "KEY" in r}


def _passes(check: str, value, state: dict | None = None) -> bool:
    """Evaluate one CHECK expression the way the compliance checker does."""
    return bool(eval(check.strip(), {"s": state or {}, "math": math}, {"v": {"value": value}}))


@pytest.fixture(scope="session")
def closed_rules():
    """``closed_rules(benchmark, ruleset)``: {key: rule} of closed_<benchmark>.yaml."""
    return _closed_rules


@pytest.fixture(scope="session")
def passes():
    """``passes(check, value, state=None)``."""
    return _passes
