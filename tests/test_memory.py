"""The CPU peak-memory probe sees a short spike inside the region, and only the region."""
import numpy as np

from perk.memory import MemoryTrace, peak_memory


def test_peak_sees_transient_allocation():
    with peak_memory("cpu") as quiet:
        pass
    with peak_memory("cpu") as peak:
        a = np.ones(40_000_000)  # 305 MiB, freed before the region ends
        a[::4096] = 2.0
        del a
    assert 250 < peak.mib < 400, peak
    assert quiet.mib < 50, quiet
    assert peak.method


def test_trace_records_points():
    trace = MemoryTrace(interval=0.001)
    with trace.record():
        b = np.ones(10_000_000)
        b.sum()
        del b
    assert len(trace.points) >= 1
    assert all(t >= 0 and m > 0 for t, m in trace.points)
