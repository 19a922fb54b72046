"""Run the official MLPerf compliance checker (``mlperf_logging.compliance_checker``) as a library
and return its findings per MLLOG key, instead of re-implementing any of its rules."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlperf_logging.compliance_checker import mlp_compliance

_CHECK_FAILED = re.compile(r"CHECK for '([^']+)' failed in line (\d+):")
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

    @property
    def summary(self) -> str:
        """One line: "max_steps = 1200 (line 25) fails v['value'] == 1024", or the message's
        first line ("Required EXACTLY_ONE occurrence of 'seed' but found 0")."""
        lines = self.message.splitlines() or [""]
        check = _CHECK_FAILED.match(lines[0])
        test = next((x for x in lines if x.startswith("failed test: ")), None)
        if check is None or test is None:
            return lines[0]
        value = _logged_value(lines[1]) if len(lines) > 1 else "?"
        rule = test.removeprefix("failed test: ").strip()
        return f"{check[1]} = {value} (line {check[2]}) fails {rule}"


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


def _logged_value(line: str) -> str:
    """The value of a ``:::MLLOG`` line as JSON ("?" when it does not parse)."""
    try:
        return json.dumps(json.loads(line.split(":::MLLOG", 1)[1])["value"])
    except (IndexError, KeyError, TypeError, ValueError):
        return "?"


def _key_of(message: str, fallback: str | None = None) -> str | None:
    for pattern in _KEY_IN_MESSAGE:
        if m := pattern.search(message):
            return m.group(1)
    return fallback


def known_rulesets() -> list[str]:
    return sorted(mlp_compliance.rule_choices(), key=lambda v: tuple(int(x) for x in v.split(".")))


def check_ruleset(ruleset: str | None) -> None:
    """ValueError naming the known rulesets unless `ruleset` is one of them (None: the default)."""
    if ruleset is not None and ruleset not in known_rulesets():
        raise ValueError(f"unknown ruleset {ruleset!r}; known: {', '.join(known_rulesets())}")


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
_KEYS_SHOWN = 2
"""A ruleset's failing keys named in the reason for the choice; the rest counted."""


@dataclass(frozen=True)
class RulesetChoice:
    """The ruleset a folder of logs is checked against, and why that one."""

    ruleset: str | None
    reason: str
    """E.g. "given with --ruleset" or "inferred from the logs: result_0.txt passes 4.0.0 to
    6.0.0 and fails 6.1.0 (...); the newest it passes"."""

    def describe(self) -> str:
        """ "ruleset 6.0.0 (inferred from the logs: ...)", as score, check and report print it."""
        return f"ruleset {self.ruleset or 'none'} ({self.reason})"


def round_of_path(directory: Path | None) -> str | None:
    """The ruleset of a published folder's round (a path component ``training_results_vX.Y``
    gives "X.Y.0"); None elsewhere. Only a hint: the logs must confirm it."""
    for part in Path(directory).resolve().parts if directory is not None else ():
        if m := _ROUND_IN_PATH.match(part):
            return f"{m[1]}.{m[2]}.0"
    return None


def choose_ruleset(
    benchmark: str | None,
    logs: Sequence[Path] = (),
    *,
    directory: Path | None = None,
    given: str | None = None,
) -> RulesetChoice:
    """The ruleset to check ``logs`` (of ``benchmark``) against, inferred from the logs.

    ``given`` (--ruleset) wins. A folder's round in its path (``training_results_vX.Y``) is used
    when the first log passes it. Otherwise the first log is checked against every ruleset that
    knows the benchmark and the newest one it passes is taken (at a reduced scale of ours, the
    scale-dependent values aside); when it passes none, the one with the fewest errors, newest
    first. Put the most telling log first (a finished one).
    """
    if given is not None:
        return RulesetChoice(given, "given with --ruleset")
    if benchmark is None:
        return RulesetChoice(None, "the logs name no submission_benchmark")
    known = rulesets_for(benchmark)
    if not known:
        return RulesetChoice(None, f"no ruleset of mlperf_logging knows {benchmark}")
    if not logs:
        return RulesetChoice(known[-1], f"the newest that knows {benchmark}; no log to infer from")
    log, hint = Path(logs[0]), round_of_path(directory)
    if hint in known and not _failing_keys(log, hint):
        folder = f"training_results_v{hint.removesuffix('.0')}"
        return RulesetChoice(hint, f"the folder's round, {folder}; {log.name} passes it")
    failing = {r: _failing_keys(log, r) for r in reversed(known)}  # newest first
    name, scale = log.name, run_identity(log)[1]
    if scale not in (None, "full"):
        name += f" (scale {scale}: its scale-dependent values aside)"
    chosen, why = _newest_passing(name, failing, known, skip=hint)
    if hint is None or hint == chosen:
        return RulesetChoice(chosen, f"inferred from the logs: {why}")
    said = f"the folder's name says v{hint.removesuffix('.0')}, but"
    if hint in failing:
        said += f" {hint} fails {log.name} on {_keys(failing[hint])}"
    else:
        said += f" that round had no {benchmark}"
    return RulesetChoice(chosen, f"{said}; inferred from the logs instead: {why}")


def _newest_passing(
    name: str, failing: dict[str, list[str]], known: list[str], *, skip: str | None
) -> tuple[str, str]:
    """(the newest ruleset that the log ``name`` passes, why) from each one's failing keys; the
    one with the fewest when it passes none. ``skip``: a failure already told."""
    passing = [r for r in known if not failing[r]]
    if not passing:
        chosen = min(failing, key=lambda r: len(failing[r]))  # newest first on ties
        return chosen, (
            f"{name} passes no ruleset that knows its benchmark; {chosen} finds the fewest "
            f"problems ({_keys(failing[chosen])})"
        )
    chosen = passing[-1]
    why = f"{name} passes {_span(passing, known)}, the newest of which is used"
    newer = [r for r in known[known.index(chosen) + 1 :] if r != skip]
    return chosen, why + "".join(f"; {r} fails it on {_keys(failing[r])}" for r in newer)


def _failing_keys(log: Path, ruleset: str) -> list[str]:
    """The keys (or first words) of the errors that no scale explains; ["checker crashed"]."""
    try:
        report = check_run_log(log, ruleset=ruleset)
    except Exception:  # a garbled log can crash the official checker
        return ["the checker crashed on it"]
    return [f.key or f.message.splitlines()[0] for f in report.structural_errors]


def _keys(keys: list[str]) -> str:
    """ "tensor_parallelism" or "9 keys (a, b, ...)"."""
    if len(keys) == 1:
        return keys[0]
    more = ", ..." if len(keys) > _KEYS_SHOWN else ""
    return f"{len(keys)} keys ({', '.join(keys[:_KEYS_SHOWN])}{more})"


def _span(chosen: list[str], known: list[str]) -> str:
    """ "4.0.0 to 6.0.0" when ``chosen`` is a run of consecutive ``known`` rulesets."""
    first, last = known.index(chosen[0]), known.index(chosen[-1])
    if len(chosen) == 1:
        return chosen[0]
    if known[first : last + 1] == chosen:
        return f"{chosen[0]} to {chosen[-1]}"
    return ", ".join(chosen)


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
