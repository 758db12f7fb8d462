"""Plots are written as real PNGs (and atomically)."""
from perk import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    rows = [{"method": m, "length": L, "acc": a, "lo": a - 0.1, "hi": min(1, a + 0.1)}
            for m, a in (("perk", 0.9), ("baseline", 0.3)) for L in (512, 1024, 4096)]
    outs = [
        plots.accuracy_vs_length(rows, tmp_path / "acc.png", "needle", train_length=512),
        plots.heatmap([[1.0, 0.5], [None, 0.0]], [0.0, 1.0], [512, 1024], tmp_path / "h.png", "perk"),
        plots.scaling([{"method": "perk", "length": 512, "mem": 10.0, "status": "ok"},
                       {"method": "perk", "length": 1024, "mem": 12.0, "status": "ok"},
                       {"method": "prompt", "length": 1024, "mem": 0.0, "status": "oom"}],
                      "mem", tmp_path / "m.png", "memory", "MiB"),
        plots.series([(0.0, 1.0), (0.1, 3.0)], tmp_path / "s.png", "trace"),
    ]
    for p in outs:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 1000
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
