"""Peak memory of a code region, on CUDA and on CPU.

CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (the region's peak above
the tensors alive at its start), and the absolute peaks of allocated and reserved memory (what
nvidia-smi would show, the model's weights included: the paper's GB figures are of that kind).
CPU: the kernel's own high-water mark of resident memory. Writing "5" to /proc/self/clear_refs
resets VmHWM (Linux >= 4.0), so VmHWM read after the region is the true peak inside it, with no
sampling gaps; the figure reported is that peak minus the resident memory at the start. Where
clear_refs is not writable, a 1 ms sampling thread on RSS is the fallback (may miss brief spikes).
A `MemoryTrace` records RSS over time for plots of one encode.
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

_STATUS = "/proc/self/status"


def _status_kib(key: str) -> int:
    with open(_STATUS) as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Peak:
    mib: float = 0.0          # peak above the starting level
    method: str = ""
    allocated_mib: float | None = None  # CUDA only: absolute peaks, model included
    reserved_mib: float | None = None


class _Sampler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.samples, self._stop_evt = interval, [], threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        while not self._stop_evt.is_set():
            self.samples.append((time.perf_counter() - self.t0, rss_mib()))
            time.sleep(self.interval)

    def stop(self):
        self._stop_evt.set()
        self.join()


@contextmanager
def peak_memory(device: torch.device | str = "cpu", baseline_mib: float | None = None):
    """`with peak_memory(dev) as peak: ...` then `peak.mib` is the region's peak in MiB.

    CPU: measured above `baseline_mib` (default: resident memory at entry). Pass the level taken
    before any warm-up run when the region repeats earlier work: the C allocator keeps freed
    small blocks, so a repeat may reuse them without raising resident memory at all.
    """
    device = torch.device(device)
    peak = Peak()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()  # else blocks cached by earlier work hide this region's reservations
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield peak
        torch.cuda.synchronize(device)
        peak.allocated_mib = torch.cuda.max_memory_allocated(device) / 2**20
        peak.reserved_mib = torch.cuda.max_memory_reserved(device) / 2**20
        peak.mib = peak.allocated_mib - start / 2**20
        peak.method = "cuda.max_memory_allocated"
        return
    start = rss_mib() if baseline_mib is None else baseline_mib
    if _reset_hwm():
        yield peak
        peak.mib = max(0.0, _status_kib("VmHWM") / 1024 - start)
        peak.method = "VmHWM (clear_refs)"
        return
    sampler = _Sampler(0.001)
    sampler.start()
    try:
        yield peak
    finally:
        sampler.stop()
    peak.mib = max([0.0] + [m - start for _, m in sampler.samples])
    peak.method = "RSS sampling 1ms"


@dataclass
class MemoryTrace:
    """RSS (or CUDA allocated) over time while a region runs, for an MLflow trace and a plot."""
    device: str = "cpu"
    interval: float = 0.005
    points: list[tuple[float, float]] = field(default_factory=list)

    @contextmanager
    def record(self):
        dev = torch.device(self.device)
        read = (lambda: torch.cuda.memory_allocated(dev) / 2**20) if dev.type == "cuda" else rss_mib
        stop = threading.Event()
        t0 = time.perf_counter()

        def loop():
            while not stop.is_set():
                self.points.append((time.perf_counter() - t0, read()))
                time.sleep(self.interval)
        th = threading.Thread(target=loop, daemon=True)
        th.start()
        try:
            yield self
        finally:
            stop.set()
            th.join()
