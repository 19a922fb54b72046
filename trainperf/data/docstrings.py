"""A summarisation task built offline for the tiny LoRA scale: a Python function -> its docstring.

MLPerf's llama2_70b_lora fine-tunes on GovReport: a long report in the prompt, its summary as the
only scored tokens. Here the "report" is a function of the Python standard library with its
docstring removed and the "summary" is the docstring's first paragraph, written in the same
prompt template as the reference's preprocessing (``"### Summarize the following text:\\n {input}\\n
### Summary:\\n {output}{eos}"``, with "code" for "text") and in the same files: GovReport parquet
rows of ``input_ids`` and ``labels`` (-100 on the prompt). The trainer reads them with the same
code as the real dataset; only the numbers are smaller.

Functions come from the whole standard library; validation functions only from files the tiny base
model was not pretrained on. Rows are tokenized with the built-in corpus's tokenizer. The build is
deterministic and cached by a fingerprint of its inputs.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from trainperf.atomic import atomic_path
from trainperf.data import govreport
from trainperf.data.corpus import (
    EOD_TOKEN,
    MANIFEST_NAME,
    TOKENIZER_NAME,
    Stages,
    collect_documents,
    get_stdlib_root,
    split_documents,
)

FORMAT_VERSION = 3
PROMPT_HEAD = "### Summarize the following code:\n "
PROMPT_TAIL = "\n ### Summary:\n "
MAX_SUMMARY_TOKENS = 48  # longer docstrings are dropped, as the reference drops long examples
MIN_SUMMARY_TOKENS = 3
MIN_CODE_TOKENS = 16
MIN_TRAIN_ROWS = 1000


@dataclass(frozen=True)
class Pair:
    key: str  # "relpath:qualname:line", the sort key's source
    code: str
    summary: str


def _summary(doc: str) -> str:
    first = doc.strip().split("\n\n")[0]
    return re.sub(r"\s+", " ", first).strip()


def _function_code(lines: list[str], node: ast.AST) -> str:
    first, last = node.lineno, node.end_lineno  # type: ignore[attr-defined]
    return textwrap.dedent("\n".join(lines[first - 1 : last])).strip()


_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function definition of a module, nested ones included. A definition is a statement,
    so only statement lists are followed (ast.walk also visits every expression node: 10x more
    work for the same functions)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        for name in _BODIES:
            stack.extend(reversed(getattr(node, name, None) or ()))


def extract_pairs(relpath: str, text: str) -> Iterator[Pair]:
    """(code, summary) of every function in one source file that has a docstring."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return
    lines = text.splitlines()
    for node in _functions(tree):
        doc = ast.get_docstring(node, clean=True)
        if not doc or len(node.body) < 2:  # skip stubs whose body is the docstring alone
            continue
        summary = _summary(doc)
        code = _function_code(lines, node)
        if summary and code:
            yield Pair(f"{relpath}:{node.name}:{node.lineno}", code, summary)


def _ordered(pairs: list[Pair]) -> list[Pair]:
    return sorted(pairs, key=lambda p: hashlib.sha256(p.key.encode()).hexdigest())


def encode_pair(
    tokenizer: Tokenizer, pair: Pair, *, seq_len: int, eod: int
) -> tuple[list[int], list[int]] | None:
    """input_ids and labels of one row, or None if it does not fit. The code is cut at the end to
    leave room for the summary; labels are -100 on the prompt."""
    target = tokenizer.encode(pair.summary).ids + [eod]
    if not MIN_SUMMARY_TOKENS <= len(target) - 1 <= MAX_SUMMARY_TOKENS:
        return None
    head = tokenizer.encode(PROMPT_HEAD).ids
    tail = tokenizer.encode(PROMPT_TAIL).ids
    code = tokenizer.encode(pair.code).ids
    room = seq_len - len(head) - len(tail) - len(target)
    if room < MIN_CODE_TOKENS or len(code) < MIN_CODE_TOKENS:
        return None
    prompt = head + code[:room] + tail
    return prompt + target, [-100] * len(prompt) + target


def split_task_documents(corpus_max_bytes: int) -> tuple[list, list]:
    """(candidates for validation, the rest) source files of the task, from the whole standard
    library: validation candidates are the files the base model was not pretrained on (outside
    the built-in corpus's training split), in path-hash order."""
    root = get_stdlib_root()
    base_train, _ = split_documents(collect_documents(root, max_bytes=corpus_max_bytes))
    seen = {d.relpath for d in base_train}
    everything = collect_documents(root, max_bytes=1 << 40)
    return [d for d in everything if d.relpath not in seen], base_train


def _fingerprint(corpus_manifest: dict, *, seq_len: int, counts: tuple[int, int]) -> str:
    params = {
        "format_version": FORMAT_VERSION,
        "corpus": corpus_manifest.get("fingerprint"),
        "seq_len": seq_len,
        "counts": counts,
        "prompt": [PROMPT_HEAD, PROMPT_TAIL],
        "summary_tokens": [MIN_SUMMARY_TOKENS, MAX_SUMMARY_TOKENS, MIN_CODE_TOKENS],
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _rows_of(
    docs: list, tokenizer: Tokenizer, *, seq_len: int, eod: int
) -> list[tuple[list[int], list[int]]]:
    pairs = [p for d in docs for p in extract_pairs(d.relpath, d.text)]
    rows = (encode_pair(tokenizer, p, seq_len=seq_len, eod=eod) for p in _ordered(pairs))
    return [r for r in rows if r is not None]


def select_rows(
    unseen: list, seen: list, tokenizer: Tokenizer, *, seq_len: int, eod: int, counts: tuple
) -> dict[str, list[tuple[list[int], list[int]]]]:
    """Validation rows from whole unseen files, taken in order until ``counts[1]`` rows fit; train
    rows from every other file, at most ``counts[0]`` (fewer on a small standard library: the
    count is logged as train_samples)."""
    valid, used = [], 0
    while used < len(unseen) and len(valid) < counts[1]:
        valid += _rows_of([unseen[used]], tokenizer, seq_len=seq_len, eod=eod)
        used += 1
    if len(valid) < counts[1]:
        raise ValueError(
            f"the standard library gives only {len(valid)} validation code -> docstring pairs "
            f"that fit seq_len {seq_len}, {counts[1]} wanted; lower train.eval_samples"
        )
    valid = _ordered_rows(valid)[: counts[1]]
    train = _rows_of(unseen[used:] + seen, tokenizer, seq_len=seq_len, eod=eod)[: counts[0]]
    if len(train) < MIN_TRAIN_ROWS:
        raise ValueError(
            f"the standard library gives only {len(train)} training code -> docstring pairs "
            f"that fit seq_len {seq_len}; at least {MIN_TRAIN_ROWS} are needed"
        )
    return {"train": train, "validation": valid}


def _ordered_rows(rows: list) -> list:
    return sorted(rows, key=lambda r: hashlib.sha256(str(r[0]).encode()).hexdigest())


def build_docstring_task(
    out_dir: Path,
    *,
    corpus_dir: Path,
    seq_len: int,
    train_samples: int,
    eval_samples: int,
    progress: bool = False,
) -> Path:
    """Write ``train``/``validation`` GovReport-format parquet files of code -> docstring rows into
    ``out_dir`` (cached: nothing is rebuilt when the fingerprint matches). ``corpus_dir`` is a
    built-in corpus (its tokenizer and its train/validation file split are used)."""
    manifest = json.loads((corpus_dir / MANIFEST_NAME).read_text())
    fingerprint = _fingerprint(manifest, seq_len=seq_len, counts=(train_samples, eval_samples))
    done = out_dir / MANIFEST_NAME
    if done.is_file() and json.loads(done.read_text()).get("fingerprint") == fingerprint:
        return out_dir
    tokenizer = Tokenizer.from_file(str(corpus_dir / TOKENIZER_NAME))
    eod = tokenizer.token_to_id(EOD_TOKEN)
    with Stages(progress).stage("code -> docstring task") as note:
        unseen, seen = split_task_documents(int(manifest["max_bytes"]))
        rows = select_rows(
            unseen, seen, tokenizer, seq_len=seq_len, eod=eod, counts=(train_samples, eval_samples)
        )
        note["detail"] = f"{len(rows['train'])} train / {len(rows['validation'])} validation rows"
    splits = {k: ([r[0] for r in v], [r[1] for r in v]) for k, v in rows.items()}
    with atomic_path(out_dir, directory=True) as tmp:
        for split, (ids, labels) in splits.items():
            govreport.write_parquet(tmp / f"{split}-00000-of-00001.parquet", ids, labels)
        shutil.copyfile(corpus_dir / TOKENIZER_NAME, tmp / TOKENIZER_NAME)
        info = {
            "fingerprint": fingerprint,
            "seq_len": seq_len,
            "samples": {k: len(v[0]) for k, v in splits.items()},
            "scored_tokens": {
                k: sum(len(r) - r.count(-100) for r in v[1]) for k, v in splits.items()
            },
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return out_dir
