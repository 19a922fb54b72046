"""Device peaks and the one device key every module uses ("NVIDIA H200" -> "h200").

MFU is measured against the *dense* (no 2:4 sparsity) peak of the device actually present:
datasheets quote the sparse figure, twice as large, and using it halves the MFU (a frequent bug,
torchtitan's note). `device_key` is the only parser of device names: ``perf``, ``doctor``,
``systems`` and ``estimate`` all go through it.
"""

from __future__ import annotations

# Dense peak TFLOP/s (without sparsity) per device and dtype.
DEVICE_PEAKS: dict[str, dict[str, float]] = {
    # H100 SXM5: NVIDIA H100 whitepaper via glennklockwood.com/garden/processors/h100 (perf_anchors
    # §4): BF16 989.4 dense (1978.9 sparse), FP8 1978.9 dense (3957.8 sparse).
    "h100": {"bf16": 989.4, "fp8": 1978.9},
    # H200 SXM: same GH100 compute as H100 SXM; only memory differs (141 GB HBM3e, 4.8 TB/s)
    # (perf_anchors §4, NVIDIA H200 datasheet "*with sparsity" figures halved).
    "h200": {"bf16": 989.4, "fp8": 1978.9},
    # B200 SXM: NVIDIA B200 datasheet dense peaks as used by stas00/ml-engineering's MAMF table
    # (perf_anchors §4): BF16 2250, FP8 4500.
    "b200": {"bf16": 2250.0, "fp8": 4500.0},
    # MI300X: AMD Instinct MI300X datasheet, dense (without sparsity) BF16 1307.4, FP8 2614.9.
    "mi300x": {"bf16": 1307.4, "fp8": 2614.9},
    # MI325X: AMD Instinct MI325X datasheet: same CDNA 3 compute as MI300X (more/faster HBM3E).
    "mi325x": {"bf16": 1307.4, "fp8": 2614.9},
    # MI355X: AMD Instinct MI355X datasheet (CDNA 4), dense BF16 2516.6 ("2.5 PFLOPS"), FP8 5033.2
    # ("5 PFLOPS"; ISSCC 2026: per-CU FP8 8192 FLOP/clock). Not in perf_anchors.md.
    "mi355x": {"bf16": 2516.6, "fp8": 5033.2},
}

# Longest first, so that no key is matched inside a longer one.
_KEYS = sorted(DEVICE_PEAKS, key=len, reverse=True)


def device_key(name: str) -> str | None:
    """The DEVICE_PEAKS key in a device name ('NVIDIA H100 80GB HBM3' -> 'h100', 'AMD Instinct
    MI325X' -> 'mi325x'), or None for a device the table does not know (and 'cpu')."""
    lowered = name.lower().replace(" ", "").replace("-", "")
    return next((key for key in _KEYS if key in lowered), None)


def dense_peak_tflops(device: str, dtype: str) -> float:
    """Dense peak TFLOP/s of ``device`` in ``dtype``; ValueError naming the known ones."""
    peaks = DEVICE_PEAKS.get(device.lower())
    if peaks is None:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICE_PEAKS)}")
    peak = peaks.get(dtype.lower())
    if peak is None:
        raise ValueError(f"unknown dtype {dtype!r} for {device}; known: {', '.join(peaks)}")
    return peak
