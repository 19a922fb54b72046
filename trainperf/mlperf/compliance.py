"""Run the official MLPerf compliance checker (``mlperf_logging.compliance_checker``) as a library
and return its findings per MLLOG key, instead of re-implementing any of its rules."""

from __future__ import annotations

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

    @property
    def passed(self) -> bool:
        return not self.errors

    def error_keys(self) -> set[str | None]:
        return {f.key for f in self.errors}

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
