"""LoRA parity with PEFT on a tiny HF Llama: same adapter weights -> same logits and adapter grads.

Unfused: PEFT LoRA on q/k/v/o_proj vs ours on wq/wk/wv/wo. Fused: HF Llama has no fused QKV, so the
reference is the tiny HF model with q/k/v_proj replaced by one `qkv_proj` (rows [q; k; v]) whose
output HF's own attention forward slices (`_QKVSlice`), PEFT LoRA on qkv_proj/o_proj, vs ours with
`fused_qkv=True` and LoRA on wqkv/wo. Float32, dropout 0, float32 eager attention.

Weights travel the user's way: HF `save_pretrained` (base) and PEFT `save_pretrained` (adapter),
read back by `hf_adapter.load_hf_checkpoint` / `load_peft_adapter` (which apply the RoPE row
permutation and fused-QKV regrouping, lora_B rows included).
"""

from __future__ import annotations

from pathlib import Path

import peft  # noqa: E402
import pytest
import torch
import torch.nn.functional as F
import transformers  # noqa: E402  (test extra: a missing install must fail, not skip)
from torch import nn

from trainperf.models.llama.hf import (
    hf_module_name,
    load_hf_checkpoint,
    load_peft_adapter,
    qkv_row_index,
    rope_permutation,
)
from trainperf.models.llama.model import Llama, LlamaConfig
from trainperf.models.lora import LoRAConfig, apply_lora, lora_modules

# transformers 5.x warns from inside PEFT's get_peft_model; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

RANK, ALPHA = 4, 8.0
DIM, N_LAYERS, N_HEADS, N_KV, VOCAB, FFN = 64, 2, 4, 2, 128, 128
HEAD_DIM = DIM // N_HEADS


def build_hf(seed: int = 0) -> nn.Module:
    hf_cfg = transformers.LlamaConfig(
        hidden_size=DIM,
        intermediate_size=FFN,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_KV,
        vocab_size=VOCAB,
        rope_theta=1e4,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    hf = transformers.LlamaForCausalLM(hf_cfg).float()
    with torch.no_grad():  # non-trivial norms so that a swapped norm mapping would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return hf


def build_ours(*, fused: bool) -> Llama:
    extra = {"fused_qkv": True} if fused else {}
    cfg = LlamaConfig(
        dim=DIM,
        n_layers=N_LAYERS,
        n_heads=N_HEADS,
        n_kv_heads=N_KV,
        vocab_size=VOCAB,
        ffn_dim=FFN,
        norm_eps=1e-5,
        rope_theta=1e4,
        rope_scaling=None,
        max_seq_len=128,
        **extra,
    )
    return Llama(cfg)


# --- fused-QKV reference built from HF's own attention ------------------------------------------


class _QKVSlice(nn.Module):
    """Stands in for q_proj / k_proj / v_proj: rows [start, stop) of the attention's qkv_proj(x)."""

    def __init__(self, attention: nn.Module, start: int, stop: int) -> None:
        super().__init__()
        self._attention = [attention]  # a list, so it is not registered as a submodule (cycle)
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Looked up at call time, so it is PEFT's LoRA-wrapped qkv_proj once PEFT has run.
        return self._attention[0].qkv_proj(x)[..., self.start : self.stop]


def fuse_hf_qkv(hf: nn.Module) -> None:
    """Replace q/k/v_proj of every HF attention by one qkv_proj with weight cat([q; k; v])."""
    q_dim, kv_dim = N_HEADS * HEAD_DIM, N_KV * HEAD_DIM
    for layer in hf.model.layers:
        attn = layer.self_attn
        weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        attn.qkv_proj = nn.Linear(DIM, q_dim + 2 * kv_dim, bias=False)
        with torch.no_grad():
            attn.qkv_proj.weight.copy_(weight)
        attn.q_proj = _QKVSlice(attn, 0, q_dim)
        attn.k_proj = _QKVSlice(attn, q_dim, q_dim + kv_dim)
        attn.v_proj = _QKVSlice(attn, q_dim + kv_dim, q_dim + 2 * kv_dim)


# --- HF -> ours row layouts (from hf_adapter) -------------------------------------------------


def hf_rows(module: str, cfg: LlamaConfig) -> torch.Tensor | None:
    """Index p with ours = hf[p] for the output rows (weight, lora_B) of our `module`.

    q/k rows get the RoPE permutation; wqkv is gathered from HF's [q; k; v] into our per-KV-group
    layout; lora_A (columns = input features) never needs one.
    """
    leaf = module.rsplit(".", 1)[-1]
    if leaf == "wqkv":
        return qkv_row_index(cfg, "wqkv")
    if leaf in ("wq", "wk"):
        return rope_permutation(cfg.n_heads if leaf == "wq" else cfg.n_kv_heads, cfg.head_dim)
    return None


# --- the parity check -----------------------------------------------------------------------


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def check_parity(tmp_path: Path, *, fused: bool) -> None:
    hf = build_hf()
    if fused:
        fuse_hf_qkv(hf)
    hf.save_pretrained(tmp_path / "base")  # fused: qkv_proj = [q; k; v], as MLPerf's checkpoint
    hf_targets = ["qkv_proj", "o_proj"] if fused else ["q_proj", "k_proj", "v_proj", "o_proj"]
    lora_cfg = peft.LoraConfig(
        r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=hf_targets
    )
    ref = peft.get_peft_model(hf, lora_cfg)
    with torch.no_grad():  # PEFT initialises lora_B to 0: give it values so B and A both matter
        gen = torch.Generator().manual_seed(3)
        for name, p in ref.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    ref.save_pretrained(tmp_path / "adapter")

    ours = build_ours(fused=fused)
    our_targets = ("wqkv", "wo") if fused else ("wq", "wk", "wv", "wo")
    n = apply_lora(ours, LoRAConfig(rank=RANK, alpha=ALPHA, dropout=0.0, targets=our_targets))
    assert n == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    load_hf_checkpoint(ours, tmp_path / "base")
    load_peft_adapter(ours, tmp_path / "adapter")

    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    ref_logits = ref(input_ids=tokens).logits
    our_logits = ours(tokens)
    assert rel_err(our_logits, ref_logits) < 1e-5
    lm_loss(ref_logits, tokens).backward()
    lm_loss(our_logits, tokens).backward()

    checked = 0
    for name, mod in lora_modules(ours):
        theirs = ref.base_model.model.get_submodule(hf_module_name(name))
        index = hf_rows(name, ours.cfg)
        expected_b = theirs.lora_B["default"].weight.grad
        expected = {
            "lora_a": theirs.lora_A["default"].weight.grad,
            "lora_b": expected_b if index is None else expected_b[index],
        }
        for ab, want in expected.items():
            got = getattr(mod, ab).weight.grad
            assert got is not None and want.norm() > 0, f"{name}.{ab}"
            err = rel_err(got, want)
            assert err < 1e-5, f"{name}.{ab}: grad rel err {err:.2e}"
            checked += 1
    assert checked == 2 * N_LAYERS * len(our_targets)
    assert all(p.grad is None for p in ours.parameters() if not p.requires_grad)


def test_unfused_lora_matches_peft(tmp_path: Path) -> None:
    check_parity(tmp_path, fused=False)


def test_fused_qkv_lora_matches_peft(tmp_path: Path) -> None:
    check_parity(tmp_path, fused=True)


def test_fused_reference_is_the_hf_model() -> None:
    """The monkeypatched fused-QKV HF model computes what the unpatched one does."""
    hf = build_hf()
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(input_ids=tokens).logits
        fuse_hf_qkv(hf)
        assert not hasattr(hf.model.layers[0].self_attn.q_proj, "weight")
        torch.testing.assert_close(hf(input_ids=tokens).logits, expected, rtol=1e-6, atol=1e-6)
