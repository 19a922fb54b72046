"""GPU diagnosis: FlexAttention with a sliding-window block mask against the explicit softmax,
eager and compiled, the window alone and after a full-causal call (one process, as the model
calls them). Prints one line per case with the relative error of the output."""

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from trainperf.models.gpt_oss.model import SinkAttention, _BLOCK_MASKS, prepare_block_masks

T, dev = 1024, torch.device("cuda")
torch.manual_seed(0)
q, k, v = (torch.randn(1, h, T, 64, device=dev) for h in (64, 8, 8))


def err(out, window):
    ref = SinkAttention(window)._explicit(q, k, v, None)
    return ((out.float() - ref).norm() / ref.norm()).item()


def top(b, h, qi, ki):
    return (qi >= ki) & (qi - ki < 128)


bm = create_block_mask(top, None, None, T, T, device=dev)
print("torch", torch.__version__)
print("eager flex, top-level sliding mask", err(flex_attention(q, k, v, block_mask=bm, enable_gqa=True), 128))
print("compiled flex, top-level sliding mask", err(torch.compile(flex_attention)(q, k, v, block_mask=bm, enable_gqa=True), 128))
prepare_block_masks(T, {None, 128}, dev)
for w in (None, 128):
    out = flex_attention(q, k, v, block_mask=_BLOCK_MASKS[(T, w, dev)], enable_gqa=True)
    print("eager flex, model mask", w, err(out, w))
for w in (None, 128):
    print("model kernel", w, err(SinkAttention(w)(q, k, v, None), w))
print(_BLOCK_MASKS[(T, 128, dev)])
