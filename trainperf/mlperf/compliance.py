"""Run the official MLPerf compliance checker (``mlperf_logging.compliance_checker``) as a library
and return its findings per MLLOG key, instead of re-implementing any of its rules."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from mlperf_logging.compliance_checker import mlp_compliance

_KEY_IN_MESSAGE = (
    re.compile(r"CHECK for '([^']+)' failed"),
    re.compile(r"occurrence of '([^']+)'"),
    re.compile(r"Failed checks for (\w+)"),
)


@dataclass
class Finding:
    """One complaint of the checker; ``key`` is the MLLOG key it concerns, when it names one."""

    key: str | None
    message: str


@dataclass
class ComplianceReport:
    path: Path
    ruleset: str
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    scale: str | None = None
    """trainperf scale of the run (from config_<i>.json beside the log); None: not one of ours."""
    scale_keys: tuple[str, ...] = ()
    """MLLOG keys whose values depend on the scale (the benchmark's SCALE_DEPENDENT_KEYS)."""

    @property
    def passed(self) -> bool:
        """The official checker's verdict."""
        return not self.errors

    @property
    def reduced_scale(self) -> bool:
        return self.scale not in (None, "full")

    @property
    def structural_errors(self) -> list[Finding]:
        """Errors that no scale explains: all of them, except scale-dependent values of a
        reduced-scale run of ours."""
        return self.split(self.scale_keys)[0] if self.reduced_scale else list(self.errors)

    @property
    def scale_errors(self) -> list[Finding]:
        return self.split(self.scale_keys)[1] if self.reduced_scale else []

    def split(self, scale_dependent: tuple[str, ...]) -> tuple[list[Finding], list[Finding]]:
        """(structural errors, errors only about values that depend on the run's scale)."""
        scale = [f for f in self.errors if f.key in scale_dependent]
        return [f for f in self.errors if f.key not in scale_dependent], scale


def _key_of(message: str, fallback: str | None = None) -> str | None:
    for pattern in _KEY_IN_MESSAGE:
        if m := pattern.search(message):
            return m.group(1)
    return fallback


def known_rulesets() -> list[str]:
    return sorted(mlp_compliance.rule_choices(), key=lambda v: tuple(int(x) for x in v.split(".")))


def check_log(path: Path, *, ruleset: str = "6.0.0", usage: str = "training") -> ComplianceReport:
    """Check one result log with the official checker of ``ruleset`` (e.g. '5.1.0', '6.0.0')."""
    if ruleset not in mlp_compliance.rule_choices():
        raise ValueError(f"unknown ruleset {ruleset!r}; known: {', '.join(known_rulesets())}")
    if not Path(path).is_file():
        raise ValueError(f"no such result log: {path}")
    checker = mlp_compliance.make_checker(usage, ruleset, quiet=False, werror=False)
    mlp_compliance.enqueued_configs.clear()  # module-level queue shared by every checker
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # the checker reports through logging.warning
    try:
        checker.check_file(str(path), f"{usage}_{ruleset}/common.yaml")
    except FileNotFoundError as exc:  # the ruleset has no YAML for the log's benchmark
        raise ValueError(
            f"ruleset {ruleset} has no rules for the benchmark of {path} ({exc.filename}); "
            "pick a ruleset that knows it (rulesets_for(benchmark))"
        ) from None
    finally:
        logging.disable(previous)
        mlp_compliance.enqueued_configs.clear()
    report = ComplianceReport(path=Path(path), ruleset=ruleset)
    for key, msg in checker.overwritable.items():
        report.errors.append(Finding(key, msg))
    for msg in checker.not_overwritable:
        report.errors.append(Finding(_key_of(msg), msg))
    for key, msg in checker.warnings.items():
        report.warnings.append(Finding(key, msg))
    return report


def rulesets_for(benchmark: str, *, usage: str = "training") -> list[str]:
    """Compliance rulesets that know ``benchmark`` (per ``benchmark_meta``), oldest first."""
    from mlperf_logging.benchmark_meta import _ALL_ALLOWED_BENCHMARKS

    allowed = _ALL_ALLOWED_BENCHMARKS.get(usage, {})
    choices = set(mlp_compliance.rule_choices())
    found = [f"{v}.0" for v, names in allowed.items() if benchmark in names]
    return sorted(
        (r for r in found if r in choices), key=lambda v: tuple(int(x) for x in v.split("."))
    )


_ROUND_IN_PATH = re.compile(r"^training_results_v(\d+)\.(\d+)$")


def choose_ruleset(benchmark: str | None, directory: Path | None = None) -> str | None:
    """The ruleset to check ``benchmark`` against; None when no ruleset knows it.

    A published folder (a path component ``training_results_vX.Y``) is checked against its own
    round's rules when that round knows the benchmark; otherwise the newest ruleset that does.
    """
    if benchmark is None:
        return None
    known = rulesets_for(benchmark)
    for part in Path(directory).resolve().parts if directory is not None else ():
        if (m := _ROUND_IN_PATH.match(part)) and f"{m[1]}.{m[2]}.0" in known:
            return f"{m[1]}.{m[2]}.0"
    return known[-1] if known else None


def run_identity(log: Path) -> tuple[str | None, str | None]:
    """(benchmark, scale) of a trainperf run, from the ``config_<i>.json`` written beside
    ``result_<i>.txt``; (None, None) for logs that are not ours."""
    config = log.with_name(log.name.replace("result_", "config_", 1)).with_suffix(".json")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        return data.get("benchmark"), data.get("scale")
    except (OSError, ValueError, AttributeError):
        return None, None


def check_run_log(path: Path, *, ruleset: str) -> ComplianceReport:
    """``check_log``, plus the run's scale so that a reduced-scale run of ours can be judged on
    its structure (its scale-dependent values are listed apart, not ignored)."""
    from trainperf.benchmarks import BENCHMARKS

    report = check_log(path, ruleset=ruleset)
    benchmark, report.scale = run_identity(Path(path))
    spec = BENCHMARKS.get(benchmark) if benchmark else None
    report.scale_keys = spec.scale_dependent_keys if spec is not None else ()
    return report
