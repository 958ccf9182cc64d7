"""Shared plumbing of the benchmarks: alternated timing, machine description, result files.

Benchmarks run by hand (never in CI with timing asserts). Each contender is timed in the same
process, alternating, after warm-up; the median of the repeats is reported.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from resnet_det.engine.launch import cpu_model


def machine_info() -> dict:
    """CPU model, thread count, torch version and device: printed with every result."""
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_alternating(contenders: dict, *, repeats: int, warmup: int, device="cpu") -> dict:
    """Median seconds per call of each zero-argument callable, calls interleaved (A, B, B, A, ...)."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times = {name: [] for name in contenders}
    order = list(contenders.items())
    for i in range(repeats):
        # A, B, B, A, A, B...: no contender always runs first in a round (cache, turbo, load).
        for name, fn in order if i % 2 == 0 else order[::-1]:
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_ceiling(device="cpu", n=None, repeats=5, dtype=torch.float32) -> float:
    """Measured multiply-adds per second of a large square matmul in ``dtype``: the machine's
    practical peak (n defaults to 2048 on CPU, 8192 on GPU). On CUDA an fp32 matmul may use
    TF32 exactly when cuDNN convolutions may (``torch.backends.cudnn.allow_tf32``, on by
    default), so the ceiling is in the arithmetic the convolutions actually get."""
    n = n or (8192 if torch.device(device).type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        seconds = time_alternating({"mm": lambda: a @ b}, repeats=repeats, warmup=2, device=device)["mm"]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return n**3 / seconds


def write_result(name: str, payload: dict, out_dir="benchmarks/results") -> Path:
    """Write ``payload`` (with the machine description) as json; returns the path."""
    path = Path(out_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    return path


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table of ``rows`` (dicts) over ``columns``."""
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB): Linux's VmHWM, which starts afresh at exec.
    (``ru_maxrss`` is kept across fork and exec, so a child started by a big parent would
    report the parent's peak.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
