"""The peer (../shared/tools/peer_bench.py, carried as .peer/peer_bench.py) on a proxy depth.

peer_bench.py measures HF Transformers + FSDP2 (+ PEFT) on the sizes of its SIZES table; a proxy
of the same shapes with fewer layers is one more entry in that table, nothing else changes:

    torchrun --nproc-per-node 1 bench/peer_proxy.py hf-pretrain --size 8b --layers 4 --steps 8

--profile DIR runs its last two steps under torch.profiler (the peer's AdamW.step marks the step
boundaries) and prints the same GPU-time summary as `trainperf perf --profile` on stderr; its
step times then include the profiler's overhead: take throughput from a run without it.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".peer"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import peer_bench  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("what", choices=["hf-pretrain", "hf-lora"])
parser.add_argument("--size", default="8b", choices=list(peer_bench.SIZES))
parser.add_argument("--layers", type=int)
parser.add_argument("--seq", type=int, default=8192)
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--profile", type=Path, metavar="DIR")
args = parser.parse_args()
name = args.size
if args.layers:
    name = f"{args.size}_l{args.layers}"
    peer_bench.SIZES[name] = (args.layers, *peer_bench.SIZES[args.size][1:])

if args.profile is None:
    peer_bench.bench_hf(name, args.seq, args.steps, lora=args.what == "hf-lora")
else:
    from trainperf.perf.profile import profile_activities, summarize_trace, write_trace

    steps_seen, profiled, events = [0], 2, []
    rank = int(__import__("os").environ.get("RANK", 0))
    path = args.profile / f"peer_trace_rank{rank}.json.gz"
    prof = torch.profiler.profile(
        activities=profile_activities(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
        schedule=torch.profiler.schedule(wait=args.steps - profiled, warmup=0, active=profiled),
        on_trace_ready=lambda p: events.extend(write_trace(p, path)),
    )
    wall = {}
    step = torch.optim.AdamW.step
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def step_and_mark(self, *a, **kw):  # the peer's own optimizer step, then a profiler mark
        out = step(self, *a, **kw)
        steps_seen[0] += 1
        if steps_seen[0] == args.steps - profiled:
            sync()
            wall["start"] = time.perf_counter()
        if steps_seen[0] == args.steps:
            sync()
            wall["end"] = time.perf_counter()
        prof.step()
        return out

    torch.optim.AdamW.step = step_and_mark
    prof.start()
    peer_bench.bench_hf(name, args.seq, args.steps, lora=args.what == "hf-lora")
    prof.stop()
    if rank == 0:
        s = summarize_trace(
            events, steps=profiled, wall_s=wall["end"] - wall["start"], trace=str(path)
        )
        print("\n".join(s.lines()), file=sys.stderr)
