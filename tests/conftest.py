from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from trainperf.models.llama.model import LlamaConfig

FLOAT32_ROUNDOFF = 2.0**-24
"""Unit roundoff u of float32: one correctly rounded operation is off by at most u, relatively."""
LAMBDA = 8.0
"""Confidence of the probabilistic bound: |error| <= LAMBDA sqrt(n) u fails with probability below
2 n exp(-LAMBDA^2 / 2), about 1e-10 for the n of our tiny models (Higham & Mary, SIAM J. Sci.
Comput. 41(5), 2019, theorem 3.1)."""


def float32_step_terms(cfg: LlamaConfig, *, tokens: int, seq_len: int) -> int:
    """Float32 terms on the longest chain of sums in one training step of the Llama `cfg`.

    Forward, per block: the two RMSNorms (dim each), the Q/K/V projections (dim), the scores
    (head_dim), attention's weighted sum (seq_len keys), wo (dim), w1/w3 (dim) and w2 (ffn_dim);
    then the final norm and the output projection (dim each), the log-sum-exp over the vocabulary
    and the loss's sum over `tokens`. Backward retraces that chain, and a weight's gradient sums
    over the `tokens` once more. LoRA adapters add a chain of `rank` terms beside their base,
    which this leaves out (rank 4 to 16 next to hundreds of terms).
    """
    block = 5 * cfg.dim + cfg.head_dim + seq_len + cfg.ffn_dim
    forward = cfg.n_layers * block + 2 * cfg.dim + cfg.vocab_size + tokens
    return 2 * forward + tokens


def float32_step_bound(cfg: LlamaConfig, *, tokens: int, seq_len: int) -> float:
    """How far, relatively, a float32 result of one training step (the loss, a gradient) may
    differ between two runs that add the same terms in other orders (sharded vs one process).

    A sum of n terms in float32 is off by at most LAMBDA sqrt(n) u relative to the sum of the
    terms' magnitudes, with near certainty, since rounding errors are independent and of mean
    zero (Higham & Mary 2019); the errors of a chain of sums add up the same way, so n counts the
    terms of the whole chain (`float32_step_terms`). Each run has its own errors: twice that.
    Nothing else differs: the sharded and the one-process runs compute the same sums.
    """
    n = float32_step_terms(cfg, tokens=tokens, seq_len=seq_len)
    return 2 * LAMBDA * math.sqrt(n) * FLOAT32_ROUNDOFF


@pytest.fixture(scope="session", autouse=True)
def trainperf_home(tmp_path_factory):
    """Keep every test's corpus cache out of the user's home; reuse it across the session.

    CI sets TRAINPERF_HOME to a folder inside the clone; otherwise a session temp folder is used.
    """
    if "TRAINPERF_HOME" not in os.environ:
        os.environ["TRAINPERF_HOME"] = str(tmp_path_factory.mktemp("trainperf_home"))
    return Path(os.environ["TRAINPERF_HOME"])


@pytest.fixture(scope="session")
def rounding_bound() -> Callable[..., float]:
    """``rounding_bound(cfg, tokens=, seq_len=)``: `float32_step_bound`, the tolerance of the
    parity tests (sharded training vs one process)."""
    return float32_step_bound
