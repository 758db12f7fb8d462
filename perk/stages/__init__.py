"""The pipeline's stages: one module and one short function each, `stage(params, progress) -> output`.

The CLI (`perk <name>`), dvc.yaml (stage `<name>`, whose `cmd` is that CLI command) and the Prefect
flow (deployment `perk/<name>`) all go through `call(name, params)`, so the three ways of running
the pipeline cannot drift apart. A stage has one name everywhere: `meta-train` is the CLI command,
the DVC stage and the deployment, and `perk.stages.meta_train.meta_train` is its function.

`call` opens the stage call's one MLflow run (in the experiment of the task family it works on);
the stage logs into it, and an orchestrator only adds tags (PERK_* environment variables).
Stage modules are imported only when called, so `import perk.stages` stays cheap and each stage's
DVC deps are the modules its own function needs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..config import ConfigError, Params

# Pipeline order: name -> (module under perk.stages, one-line help).
ORDER: dict[str, tuple[str, str]] = {
    "tokenizer": ("tokenizer", "Train the tiny profile's byte-level BPE (or copy a named model's tokenizer)."),
    "synth": ("synth", "Synthesize needle / babilong / records / retrieval tasks into Parquet."),
    "import": ("imports", "Import RULER / BABILong / reference-PERK files (imports.datasets) into "
               "{imports.out_dir}/{family}/{subset}/{split}.parquet tasks, e.g. meta_train.task=ruler/niah_single_2; "
               "malformed files are errors, unusable records counted skips (report.json beside the Parquet), "
               "datasets with no file present skipped loudly (imports.absent)."),
    "pretrain": ("pretrain", "LM-pretrain the tiny base model on haystack text (no-op for a named model); "
                 "resumes from its last checkpoint after a kill."),
    "meta-train": ("meta_train", "Meta-train PERK (the inner loop encodes the context into LoRA; the outer loop "
                   "learns to answer from it); resumes from its last checkpoint after a kill."),
    "baseline": ("baseline", "Fine-tune the prompt-based long-context baseline (FT-ICR) on the same data; resumes."),
    "evaluate": ("evaluate", "Evaluate PERK and the baseline over task x length x depth; resumable per cell."),
    "capacity": ("capacity", "Recall vs facts per context at one length: PERK per LoRA rank (meta-trains the "
                 "extra ranks) and the baseline, every key asked."),
    "profile": ("profile", "Profile peak memory and latency vs context length, PERK vs prompt-based."),
    "position": ("position", "The position-bias matrix of a protocol (params.yaml `position:`): train x test "
                 "gold-document position EM, PERK and the baseline, from its four task-matrix cells."),
}
ALIASES = {"train": "meta-train", "meta_train": "meta-train"}  # older spellings still accepted


@dataclass(frozen=True)
class Shards:
    """A stage that can run as independent shards: `split(params)` gives one list of extra
    overrides per shard; after all shards, `merge(params)` (the whole call) reuses their outputs."""
    split: Callable[[Params], list[list[str]]]
    merge: Callable[..., Any]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., Any]  # (params, progress=True) -> output path(s)
    family: Callable[[Params], str | None] = lambda p: None  # MLflow experiment: perk-<family>
    run_name: Callable[[Params], str] | None = None
    shards: Shards | None = None


def canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in ORDER:
        raise ConfigError(f"unknown stage {name!r}; stages, in pipeline order: {', '.join(ORDER)}")
    return name


def names() -> list[str]:
    return list(ORDER)


def get(name: str) -> Stage:
    module = importlib.import_module(f"{__name__}.{ORDER[canonical(name)][0]}")
    return module.STAGE


def call(name: str, p: Params, progress: bool = True, merge: bool = False):
    """Run one stage (or, `merge=True`, its shards' merge) inside its one MLflow run; rank 0 only
    tracks under torchrun."""
    import contextlib
    import os

    from .. import tracking

    stage = get(name)
    if merge and stage.shards is None:
        raise ConfigError(f"stage {stage.name!r} has no shards to merge")
    fn = stage.shards.merge if merge else stage.run
    run_name = (stage.run_name(p) if stage.run_name else stage.name) + ("-merge" if merge else "")
    if p.cell:  # a cell of the task matrix: DVC's name for it (matrix-meta-train@retrieval-random)
        run_name = f"matrix-{stage.name}@{p.cell}" + ("-merge" if merge else "")
    tracked = int(os.environ.get("RANK", "0")) == 0
    ctx = tracking.run(stage.name, p, task=stage.family(p), run_name=run_name) if tracked else contextlib.nullcontext()
    with ctx:
        return fn(p, progress=progress)
