"""Sharded reading and atomic writing of safetensors checkpoints, for every model family.

A family's adapter (``models/<family>/hf.py``) says where each of its tensors comes from: a
``RowSource`` (one or more tensors of the checkpoint, concatenated along the rows, and an
optional row gather). This module does the rest, for any family:

- ``load_plan`` checks every name, shape and dtype against the safetensors headers first (a bad
  checkpoint raises one ValueError and changes nothing), then fills each parameter's local shard
  in place: a rank reads only the rows and columns of its own FSDP / tensor-parallel slice with
  ``safe_open(...).get_slice``, never the whole model;
- ``write_checkpoint_dir`` writes JSON and safetensors files into a temporary folder beside the
  destination and renames it when complete, so a crash never leaves half a checkpoint;
- ``full_tensor`` gathers a DTensor (a collective: every rank calls it), ``canonical_name``
  strips the name segments that activation checkpointing and torch.compile insert.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from trainperf.atomic import atomic_path

try:  # torch builds without distributed support have no DTensor
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
except ImportError:  # pragma: no cover
    DTensor = None  # type: ignore[assignment,misc]

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Module wrappers (activation checkpointing, torch.compile, FSDP1) that insert a name segment.
_WRAPPERS = ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module.")


def canonical_name(name: str) -> str:
    """Our parameter name without wrapper segments (activation checkpointing, torch.compile)."""
    for wrapper in _WRAPPERS:
        name = name.replace(wrapper, "")
    return name


@dataclass(frozen=True)
class RowSource:
    """Where one of our tensors comes from: our row r = concat(names)[index[r]] (index None:
    the identity), each named checkpoint tensor having ``rows`` rows (-1: as many as ours)."""

    names: tuple[str, ...]
    rows: tuple[int, ...]
    index: torch.Tensor | None = None


# --- reading shards -----------------------------------------------------------------------------


def local_box(param: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, global offset) of the part of `param` this rank holds (all of it if not a DTensor).

    FSDP2 pads uneven shards in storage only: `to_local()` has the unpadded chunk shape that
    `compute_local_shape_and_global_offset` returns.
    """
    if DTensor is not None and isinstance(param, DTensor):
        shape, offset = compute_local_shape_and_global_offset(
            param.shape, param.device_mesh, param.placements
        )
        return tuple(shape), tuple(offset)
    return tuple(param.shape), (0,) * param.dim()


def local_tensor(param: torch.Tensor) -> torch.Tensor:
    return param.to_local() if DTensor is not None and isinstance(param, DTensor) else param


class SafetensorsFiles:
    """Open safetensors files of one checkpoint, by tensor name; closed on exit."""

    def __init__(self, folder: Path, weight_map: dict[str, str], stack: contextlib.ExitStack):
        self.folder, self.weight_map, self._stack = folder, weight_map, stack
        self._open: dict[str, object] = {}

    def handle(self, name: str):  # -> safetensors safe_open handle
        file = self.weight_map[name]
        if file not in self._open:
            try:
                handle = safe_open(str(self.folder / file), framework="pt", device="cpu")
            except Exception as e:  # safetensors raises its own error types for bad headers
                raise ValueError(
                    f"safetensors file {self.folder / file} is unreadable: {e}"
                ) from None
            self._open[file] = self._stack.enter_context(handle)
        return self._open[file]

    def slice(self, name: str):
        return self.handle(name).get_slice(name)


def read_rows(
    files: SafetensorsFiles, src: RowSource, shape: tuple[int, ...], offset: tuple[int, ...]
) -> torch.Tensor:
    """Our rows [offset[0], offset[0] + shape[0]) (and columns likewise) read from `src`, reading
    from each HF tensor only the smallest row range that covers the rows needed."""
    r0, r1 = offset[0], offset[0] + shape[0]
    cols = slice(offset[1], offset[1] + shape[1]) if len(shape) == 2 else None
    index = torch.arange(r0, r1) if src.index is None else src.index[r0:r1]
    out: torch.Tensor | None = None
    start = 0
    for name, rows in zip(src.names, src.rows):
        rows = rows if rows >= 0 else r1  # identity sources do not record the size
        pos = ((index >= start) & (index < start + rows)).nonzero().squeeze(1)
        hf_rows, start = index[pos] - start, start + rows
        if len(pos) == 0:
            continue
        lo, hi = int(hf_rows.min()), int(hf_rows.max()) + 1
        block = files.slice(name)[lo:hi] if cols is None else files.slice(name)[lo:hi, cols]
        if out is None:
            out = block.new_empty(shape)
        out[pos] = block[hf_rows - lo]
    assert out is not None and tuple(out.shape) == shape, (src.names, shape)
    return out


FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def _expected_hf_shape(src: RowSource, k: int, param: torch.Tensor) -> tuple[int, ...]:
    rows = src.rows[k] if src.rows[k] >= 0 else param.shape[0]
    return (rows, *param.shape[1:])


def validate_plan(
    files: SafetensorsFiles,
    plan: dict[str, RowSource],
    params: dict[str, torch.Tensor],
    where: str,
    *,
    ignored: re.Pattern | None = None,
) -> None:
    """Every tensor `plan` needs is listed, present in its file, floating point, of the right
    shape; and the checkpoint has nothing we would silently drop (but names matching
    `ignored`). ValueError otherwise."""
    for ours, src in plan.items():
        for k, name in enumerate(src.names):
            if name not in files.weight_map:
                raise ValueError(f"{where}: tensor {name} is missing (needed for our {ours})")
            file = files.weight_map[name]
            if not (files.folder / file).is_file():
                raise ValueError(f"{where}: shard file {file} (holding {name}) does not exist")
            handle = files.handle(name)
            if name not in handle.keys():
                raise ValueError(f"{where}: {file} has no tensor {name} though the index says so")
            sl = handle.get_slice(name)
            got, want = tuple(sl.get_shape()), _expected_hf_shape(src, k, params[ours])
            if got != want:
                raise ValueError(
                    f"{where}: tensor {name} in {file} has shape {got}; expected {want} "
                    f"(for our {ours})"
                )
            if sl.get_dtype() not in FLOAT_DTYPES:
                raise ValueError(
                    f"{where}: tensor {name} in {file} has dtype {sl.get_dtype()}; expected a "
                    "floating-point dtype (F32, BF16, F16, ...)"
                )
    used = {name for src in plan.values() for name in src.names}
    extra = sorted(
        n for n in files.weight_map if n not in used and not (ignored and ignored.search(n))
    )
    if extra:
        raise ValueError(
            f"{where}: {len(extra)} tensor(s) the model has no place for, e.g. "
            f"{', '.join(extra[:3])}; wrong model flavor or architecture?"
        )


@torch.no_grad()
def load_plan(
    folder: Path,
    weight_map: dict[str, str],
    plan: dict[str, RowSource],
    params: dict,
    where: str,
    quantized: dict[str, nn.Module] | None = None,
    ignored: re.Pattern | None = None,
) -> None:
    """Validate everything, then fill each parameter's local shard in place; a `quantized`
    weight (a float8 frozen base) is handed to its layer's ``load_weight_`` instead."""
    with contextlib.ExitStack() as stack:
        files = SafetensorsFiles(folder, weight_map, stack)
        validate_plan(files, plan, params, where, ignored=ignored)
        for ours, src in plan.items():
            param = params[ours]
            shape, offset = local_box(param)
            local = local_tensor(param)
            assert tuple(local.shape) == shape, (ours, tuple(local.shape), shape)
            if local.numel() == 0:
                continue
            value = read_rows(files, src, shape, offset)
            if quantized and ours in quantized:
                quantized[ours].load_weight_(value)
            else:
                local.copy_(value)


# --- files ------------------------------------------------------------------------------------


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {path} is unreadable: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} is not a JSON object")
    return data


def read_weight_map(
    folder: Path, *, single_file: str = SINGLE_FILE, index_file: str = INDEX_FILE
) -> dict[str, str]:
    """Checkpoint tensor name -> safetensors file name, from the index or the single file
    (HF Transformers' names by default; diffusers' are diffusion_pytorch_model.*)."""
    index = folder / index_file
    if index.exists():
        weight_map = read_json(index, "safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"safetensors index {index} has no 'weight_map' object")
        return weight_map
    single = folder / single_file
    if not single.exists():
        raise ValueError(f"{folder} has neither {index_file} nor {single_file}")
    try:
        with safe_open(str(single), framework="pt") as f:
            return dict.fromkeys(f.keys(), single_file)
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise ValueError(f"safetensors file {single} is unreadable: {e}") from None


def base_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter but the LoRA adapters, by canonical name; a float8 frozen weight (a
    buffer) stands for its layer's weight."""
    params = {canonical_name(n): p for n, p in model.named_parameters()}
    params.update({name: owner.weight for name, owner in quantized_owners(model).items()})
    return {n: p for n, p in params.items() if ".lora_a." not in n and ".lora_b." not in n}


def quantized_owners(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose frozen weight is a quantized buffer (parallel.float8 with LoRA), by the
    weight's name; they store a high-precision value through ``load_weight_``."""
    return {
        canonical_name(f"{name}.weight"): mod
        for name, mod in model.named_modules()
        if hasattr(mod, "load_weight_") and "weight" in mod._buffers
    }


class TensorFiles(SafetensorsFiles):
    """`SafetensorsFiles` over in-memory tensors (a tensor slices like a safetensors slice)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def slice(self, name: str) -> torch.Tensor:
        return self.tensors[name]


# --- writing ------------------------------------------------------------------------------------


def process_rank() -> int:
    """This process's rank (0 without torch.distributed): rank 0 writes checkpoints."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on CPU (a collective for DTensors: every rank must call it)."""
    if DTensor is not None and isinstance(t, DTensor):
        t = t.full_tensor()
    return t.detach().to("cpu", copy=True)


def write_checkpoint_dir(
    out_dir: str | Path, files: dict[str, dict], tensors: dict[str, dict]
) -> Path:
    """Write JSON `files` and safetensors `tensors` into a temp dir next to `out_dir`, then rename
    it to `out_dir` (which must not exist or be empty): a crash never leaves half a checkpoint."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not empty; choose another directory")
    with atomic_path(out, directory=True) as tmp:
        for name, data in files.items():
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n")
        for name, data in tensors.items():
            save_file(data, str(tmp / name), metadata={"format": "pt"})
    return out
