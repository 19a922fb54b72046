"""Reading training metrics off the GPU without stalling it.

``float(loss)`` in the training loop makes the host wait until the GPU has finished every queued
kernel, so the next step's kernels are queued late and the GPU idles for the length of the host's
work (data, Python, launches). ``AsyncScalar`` instead starts a device-to-host copy into pinned
memory behind the step's kernels and records a CUDA event; the value is read once the event has
passed, typically one or more steps later, and handed over with the metadata it was taken with.
"""

from __future__ import annotations

from typing import Any

import torch


class AsyncScalar:
    """A queue of scalars copied off the device in the background, read when they are ready."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pending: list[tuple[torch.Tensor, Any, torch.cuda.Event | None]] = []

    def put(self, value: torch.Tensor, meta: Any) -> None:
        """Start copying the 0-d tensor `value` to the host; `meta` comes back with it."""
        if self.device.type != "cuda":
            self._pending.append((value.detach().cpu(), meta, None))
            return
        host = torch.empty((), dtype=value.dtype, pin_memory=True)
        host.copy_(value.detach(), non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self._pending.append((host, meta, event))

    def ready(self, *, wait: bool = False) -> list[tuple[float, Any]]:
        """The (value, meta) pairs whose copies have finished, oldest first; all with wait."""
        out = []
        while self._pending:
            host, meta, event = self._pending[0]
            if event is not None and not event.query():
                if not wait:
                    break
                event.synchronize()
            out.append((float(host), meta))
            self._pending.pop(0)
        return out
