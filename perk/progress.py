"""Progress of long work: a tqdm bar on a terminal, plain lines elsewhere.

Under `dvc repro`, CI or a Prefect worker, stderr is not a terminal and a redrawn bar turns into
noise (or nothing), so there a line is printed every `every_pct` percent or `every_s` seconds:

    meta-train: 300/700 (43%) 2m31s elapsed, ~3m21s left | loss 1.92 val_em 0.5
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

from tqdm.auto import tqdm


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LineProgress:
    """The tqdm subset the stages use (iterate, update, set_postfix, write, close), as log lines."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 initial: int = 0, every_pct: float = 10.0, every_s: float = 60.0, file=None):
        self.iterable, self.desc, self.n, self.start_n = iterable, desc, initial, initial
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every_pct, self.every_s, self.file = every_pct, every_s, file or sys.stderr
        self.t0 = self.last_t = time.monotonic()
        self.last_pct, self.postfix = -1.0, ""

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        pct = 100.0 * self.n / self.total if self.total else 0.0
        done = self.total is not None and self.n >= self.total
        if done or now - self.last_t >= self.every_s or (self.total and pct >= self.last_pct + self.every_pct):
            self._line(now, pct)

    def _line(self, now: float, pct: float) -> None:
        self.last_t, self.last_pct = now, pct - pct % self.every_pct if self.every_pct else pct
        elapsed = now - self.t0
        msg = f"{self.desc}: {self.n}/{self.total or '?'}"
        if self.total:
            msg += f" ({pct:.0f}%) {_fmt(elapsed)} elapsed"
            rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0
            if rate > 0 and self.n < self.total:
                msg += f", ~{_fmt((self.total - self.n) / rate)} left"
        print(msg + (f" | {self.postfix}" if self.postfix else ""), file=self.file, flush=True)

    def set_postfix(self, values: dict | None = None, **kw) -> None:
        self.postfix = " ".join(f"{k} {v}" for k, v in {**(values or {}), **kw}.items())

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent(LineProgress):
    def _line(self, now: float, pct: float) -> None:
        pass


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", initial: int = 0,
        enabled: bool = True, leave: bool = True, unit: str = "it"):
    """A tqdm bar on a terminal, LineProgress otherwise, nothing when disabled (`--no-progress`)."""
    if not enabled:
        return _Silent(iterable, total, desc, initial)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, initial=initial, leave=leave, unit=unit, dynamic_ncols=True)
    return LineProgress(iterable, total, desc, initial)


def write(text: str) -> None:
    """A message that does not break a bar on screen."""
    tqdm.write(text)
