"""The official seed checker (``mlperf_logging/package_checker/seed_checker.py``) as a library.

Its rules: every run logs a seed through MLLOG, seeds are integers, and no two runs log the same
seed from the same source line. This module only calls it and returns its messages.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mlperf_logging.package_checker.seed_checker import SeedChecker

__all__ = ["SeedVerdict", "check_seeds"]


@dataclass
class SeedVerdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    """The checker's error messages (empty when it passes)."""
    warnings: list[str] = field(default_factory=list)
    """E.g. a run that logs more than one seed."""


def check_seeds(files: list[Path], *, ruleset: str) -> SeedVerdict:
    """Seed verdict for the result logs ``files`` of one benchmark folder."""
    if not files:
        return SeedVerdict(False, ["no result files to check"])
    checker = SeedChecker(ruleset)
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # check_seeds() only logs these messages; this is the call that returns them.
            errors = checker._assert_unique_seed_per_run([str(f) for f in files])
    finally:
        logging.disable(previous)
    return SeedVerdict(not errors, list(errors), [str(w.message) for w in caught])
