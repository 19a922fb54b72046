"""Launching: here, under torchrun, as a run set, or through Slurm (see the modules)."""

EXIT_USER_ERROR = 2
"""Exit status of a trainperf command for bad input (an error message, no traceback). A run set
stops at a run that exits with it: every later run would fail the same way."""
