"""Every benchmark spec: its rules by MLLOG key pass the official closed YAML of every ruleset
it names, its scales build valid configs, and its fields agree with each other."""

import pytest
from mlperf_logging.mllog import constants as C

from trainperf.benchmarks import BENCHMARKS, get_benchmark
from trainperf.benchmarks.spec import BenchmarkSpec
from trainperf.mlperf.compliance import rulesets_for

CASES = [(spec, ruleset) for spec in BENCHMARKS.values() for ruleset in spec.rulesets]


@pytest.mark.parametrize("spec, ruleset", CASES, ids=[f"{s.name}-{r}" for s, r in CASES])
def test_rules_pass_the_closed_yaml(spec: BenchmarkSpec, ruleset, closed_rules, passes):
    yaml_rules = closed_rules(spec.name, ruleset)
    checked = 0
    for key, value in spec.rules.items():
        rule = yaml_rules.get(key, {})
        if key == C.EVAL_ACCURACY:
            assert passes(rule["ATLEAST_ONE_CHECK"], value), (key, value)
            assert not passes(rule["ATLEAST_ONE_CHECK"], value + 1e-6)
            assert value == spec.eval.target
            checked += 1
        elif "CHECK" in rule and "s[" not in rule["CHECK"]:  # checks of other keys: elsewhere
            assert passes(rule["CHECK"], value), (key, value)
            checked += 1
    assert checked >= 2, f"{spec.name}: no rule of {ruleset} was checked"


@pytest.mark.parametrize("spec", BENCHMARKS.values(), ids=list(BENCHMARKS))
def test_spec_fields_agree(spec: BenchmarkSpec) -> None:
    assert get_benchmark(spec.name) is spec and spec.rcp_name == spec.name
    assert set(spec.rulesets) <= set(rulesets_for(spec.name)), "a ruleset that lacks it"
    assert spec.rules[C.EVAL_SAMPLES] == spec.eval.eval_samples
    trainable = spec.untrainable is None
    if trainable:
        assert spec.family.name == spec.family_name
    else:  # no family to build (deepseekv3_671b): every use of it says why
        with pytest.raises(ValueError, match=f"{spec.name} cannot be trained with trainperf: "):
            spec.family  # noqa: B018 - the property raises
    for name, scale in spec.scales.items():
        cfg = spec.config(name)
        assert (cfg.benchmark, cfg.scale, cfg.train.target) == (spec.name, name, scale.target)
        assert spec.resolve(cfg).train.eval_skip is not None
        if trainable:
            spec.family.model_config(cfg)  # the family builds this scale's model config
    for preset in spec.perf_presets.values():
        assert preset.scale in spec.scales
    full = spec.config("full")
    assert full.train.eval_samples == spec.eval.eval_samples
    assert full.train.eval_every_samples == spec.eval.every_samples


def test_rounds_and_retirement() -> None:
    """Each spec names its rounds from its rulesets; the newest round trainperf knows is the
    newest of them, and a benchmark it lacks (llama31_405b after v6.0) is retired there."""
    from trainperf.benchmarks import BENCHMARKS, NEWEST_RULESET, rounds_of
    from trainperf.benchmarks.spec import round_name

    assert round_name("6.1.0") == "v6.1" and round_name("5.0.0") == "v5.0"
    assert NEWEST_RULESET == "6.1.0"
    lr = BENCHMARKS["llama31_405b"]
    assert lr.rounds == ("v5.0", "v5.1", "v6.0")
    assert rounds_of(lr) == "v5.0, v5.1, v6.0 (retired)"
    note = lr.retired_note(NEWEST_RULESET)
    assert note is not None and "retired in MLPerf Training v6.1" in note
    assert "its last round: v6.0" in note and "ruleset 6.0.0" in note
    for name in ("llama31_8b", "llama2_70b_lora", "flux1", "deepseekv3_671b"):
        assert BENCHMARKS[name].retired_note(NEWEST_RULESET) is None
        assert rounds_of(BENCHMARKS[name]).endswith("v6.1")
