"""``trainperf doctor``: is this machine (and this config) ready to run a benchmark?

Each check is a function returning a :class:`Check` (pass / warn / fail / skip, the measured
value, and a one-line fix). :func:`run_checks` runs them in order and never raises for an
environment problem: a check that errors becomes a ``fail`` carrying the reason.

    gpu.py     GPUs visible, driver / torch / CUDA versions, free memory, bf16 GEMM TFLOP/s,
               NCCL all-reduce bus bandwidth (under torchrun, over every rank)
    host.py    disk space and sequential read speed of the data folder; the benchmark's prepared
               data, tokenizer and checkpoint present and verified (no network)
    consistency.py  the chosen config: eval interval, batch split, steps, tensor parallel, memory
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

STATUSES = ("pass", "warn", "fail", "skip")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    """'pass', 'warn' (works, but slower or riskier than it should be), 'fail' (a run would fail
    or be wrong) or 'skip' (not applicable here, e.g. GPU checks on a CPU machine)."""
    value: str
    """What was measured or found, with units."""
    fix: str = ""
    """One line saying what to do (empty when there is nothing to do)."""

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status


CheckFn = Callable[[], "Check | list[Check]"]


def run_checks(checks: Iterable[tuple[str, CheckFn]]) -> list[Check]:
    """Run each (name, function) in order; an exception becomes a 'fail' check of that name."""
    out: list[Check] = []
    for name, fn in checks:
        try:
            result = fn()
        except Exception as exc:  # an environment problem is a finding, not a crash
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            out.append(Check(name, "fail", f"{type(exc).__name__}: {reason}", _fix_for(exc)))
            continue
        out.extend(result if isinstance(result, list) else [result])
    return out


def _fix_for(exc: BaseException) -> str:
    if isinstance(exc, ValueError):
        return "see the value: it names the problem and the fix"
    return "rerun with TRAINPERF_DEBUG=1 for the traceback and report it"


def overall(checks: list[Check]) -> str:
    """'fail' when any check failed, else 'warn' when any warned, else 'pass'."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def summary_line(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"doctor: {overall(checks)} ({parts})"


def report_to_dict(checks: list[Check], **context: object) -> dict:
    return {"overall": overall(checks), **context, "checks": [asdict(c) for c in checks]}


def checks_from_dict(d: dict) -> list[Check]:
    return [Check(**c) for c in d["checks"]]


_COLOURS = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render_checks(checks: list[Check], console, *, title: str = "trainperf doctor") -> None:
    """A rich table (check, status, value, fix), then the summary line."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col in ("check", "status", "value", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        colour = _COLOURS[c.status]
        table.add_row(escape(c.name), f"[{colour}]{c.status}[/]", escape(c.value), escape(c.fix))
    console.print(table)
    colour = _COLOURS[overall(checks)]
    console.print(f"[{colour}]{escape(summary_line(checks))}[/]")
