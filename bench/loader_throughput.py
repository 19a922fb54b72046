"""How fast the llama31_8b data path delivers training windows, on CPU, without a model.

Writes a C4-shaped Megatron indexed dataset (int32 tokens, document lengths drawn like C4's with
the Llama 3.1 tokenizer: mean ~420 tokens, long tail), builds the GPTDataset indices for the full
benchmark's sample count (max_steps x GBS = 1,200,000 x 32 by default, as the reference asks
megatron for), then times ``get_batch`` over consecutive global batches of 8192-token windows,
the way the trainer reads them. Prints tokens/s and samples/s of the loader alone, the index build
time and memory, and the cached reload time. 8x H100/H200 consume about 30 samples/s at GBS 32.

    python bench/loader_throughput.py --tokens 300_000_000 --folder /tmp/c4-bench
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from trainperf.data.gpt_dataset import GPTTrainDataset, get_batch
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset

SEQ_LEN = 8192
VOCAB = 128_256


def write_corpus(prefix: Path, *, tokens: int, seed: int = 0, vocab: int = VOCAB) -> None:
    rng = np.random.default_rng(seed)

    def documents():
        left = tokens
        while left > 0:
            sizes = np.minimum(
                rng.lognormal(mean=5.6, sigma=0.9, size=10_000).astype(int) + 1, left
            )
            for size in sizes:
                if left <= 0:
                    return
                yield rng.integers(0, vocab, size=int(size), dtype=np.int32)
                left -= int(size)

    write_indexed_dataset(prefix, documents(), dtype=np.dtype(np.int32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300_000_000, help="corpus size")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/trainperf-loader-bench"))
    parser.add_argument("--num-samples", type=int, default=1_200_000 * 32)
    parser.add_argument("--gbs", type=int, default=32)
    parser.add_argument("--batches", type=int, default=50, help="global batches to time")
    args = parser.parse_args()

    prefix = args.folder / "c4-train.en_6_text_document"
    if not Path(f"{prefix}.idx").exists():
        t = time.perf_counter()
        args.folder.mkdir(parents=True, exist_ok=True)
        write_corpus(prefix, tokens=args.tokens)
        print(f"wrote {args.tokens:,} tokens in {time.perf_counter() - t:.1f} s")
    data = IndexedDataset(prefix)
    print(f"corpus: {len(data):,} documents, {data.num_tokens:,} tokens")
    cache = args.folder / "index_cache"
    for f in cache.glob("*"):
        f.unlink()

    t = time.perf_counter()
    ds = GPTTrainDataset(
        data, seq_len=SEQ_LEN, seed=1234, num_samples=args.num_samples, cache_dir=cache
    )
    build = time.perf_counter() - t
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    size_gib = sum(f.stat().st_size for f in cache.glob("*.npy")) / 2**30
    print(
        f"indices for {args.num_samples:,} samples ({ds.num_epochs} epochs, "
        f"{len(ds.document_index):,} document-index entries): built in {build:.1f} s, "
        f"cache {size_gib:.2f} GiB, peak RSS {peak_gib:.2f} GiB"
    )
    t = time.perf_counter()
    ds = GPTTrainDataset(
        data, seq_len=SEQ_LEN, seed=1234, num_samples=args.num_samples, cache_dir=cache
    )
    print(f"reload from cache: {time.perf_counter() - t:.2f} s")

    get_batch(ds, range(args.gbs))  # warm the page cache path once
    t = time.perf_counter()
    for b in range(1, args.batches + 1):
        batch = get_batch(ds, range(b * args.gbs, (b + 1) * args.gbs))
    seconds = time.perf_counter() - t
    samples = args.batches * args.gbs
    assert batch.shape == (args.gbs, SEQ_LEN + 1)
    print(
        f"get_batch: {samples / seconds:,.0f} samples/s = {samples * SEQ_LEN / seconds:,.0f} "
        f"tokens/s (one process, GBS {args.gbs}, seq {SEQ_LEN}); 8 GPUs need ~30 samples/s"
    )


if __name__ == "__main__":
    main()
