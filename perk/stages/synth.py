"""Stage `synth`: every enabled task family into Parquet."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage, common


def synth(p: Params, progress: bool = True) -> dict[str, Path]:
    """Synthesize every enabled task family into {synth.out_dir}/{family}/{split}.parquet."""
    from ..data.synth import synthesize

    return synthesize(p.synth, common.tokenizer(p), p.synth.out_dir, progress=progress)


STAGE = Stage("synth", synth)
