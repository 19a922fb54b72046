"""Where the memory of llama2_70b_lora with a float8 frozen base goes, by stage (one GPU).

python3 bench/diag_lora_memory.py --layers 8 [parallel.compile=true ...]
"""

import argparse
import json

import torch
from rich.console import Console

from trainperf.benchmarks import get_default_config
from trainperf.config import apply_overrides
from trainperf.mlperf.logger import MLPerfLogger
from trainperf.perf.measure import SyntheticData
from trainperf.train.distributed import DistEnv
from trainperf.train.trainer import Trainer

parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, default=8)
parser.add_argument("overrides", nargs="*")
args = parser.parse_args()
cfg = get_default_config("llama2_70b_lora", "full")
cfg = apply_overrides(
    cfg,
    [
        "model.checkpoint=random",
        f"model.n_layers={args.layers}",
        "train.global_batch_size=1",
        "train.seed=1",
        *args.overrides,
    ],
)
gib = 2**30
out = {"overrides": args.overrides, "layers": args.layers}
trainer = Trainer(cfg, None, ml=MLPerfLogger(None), console=Console(), env=DistEnv())
mcfg = trainer.model_config()
trainer.data = SyntheticData(seq_len=cfg.train.seq_len, vocab_size=mcfg.vocab_size, eval_samples=1)
trainer.setup()
torch.cuda.synchronize()
out["after_setup_gib"] = torch.cuda.memory_allocated() / gib
out["buffers_gib"] = sum(b.numel() * b.element_size() for b in trainer.model.buffers()) / gib
out["params_gib"] = sum(p.numel() * p.element_size() for p in trainer.model.parameters()) / gib
steps = []
for _ in range(3):
    torch.cuda.reset_peak_memory_stats()
    trainer.train_step()
    torch.cuda.synchronize()
    steps.append(
        {
            "peak_gib": torch.cuda.max_memory_allocated() / gib,
            "after_gib": torch.cuda.memory_allocated() / gib,
        }
    )
out["steps"] = steps
print(json.dumps(out))
