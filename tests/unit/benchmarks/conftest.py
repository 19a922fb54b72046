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


# Closed-division keys whose value is a module constant of the same (upper-case) name.
COMMON_CONSTANTS = (
    "max_sequence_length",
    "opt_name",
    "opt_adamw_beta_1",
    "opt_adamw_beta_2",
    "opt_adamw_epsilon",
    "opt_adamw_weight_decay",
    "opt_gradient_clip_norm",
    "opt_learning_rate_decay_schedule",
    "eval_samples",
)


def _check_constants(module, ruleset: str, extra_keys: tuple[str, ...] = ()) -> None:
    """Every constant named after a CHECKed key, and the eval target, pass the closed YAML."""
    rules = _closed_rules(module.SUBMISSION_BENCHMARK, ruleset)
    for key in (*COMMON_CONSTANTS, *extra_keys):
        value = getattr(module, key.upper())
        assert _passes(rules[key]["CHECK"], value), (key, value)
    eval_rule = rules["eval_accuracy"]["ATLEAST_ONE_CHECK"]
    assert _passes(eval_rule, module.EVAL_ACCURACY_TARGET)
    assert not _passes(eval_rule, module.EVAL_ACCURACY_TARGET + 1e-6)


@pytest.fixture(scope="session")
def check_constants():
    """``check_constants(module, ruleset, extra_keys=())``: the module's rule constants pass."""
    return _check_constants
