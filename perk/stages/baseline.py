"""Stage `baseline`: prompt-based long-context fine-tuning (FT-ICR) from the same base, same data."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from . import Stage, common, models


def baseline(p: Params, progress: bool = True) -> Path:
    """Fine-tune the base with the context in the prompt; writes model.safetensors, metrics.json, run.json."""
    import torch

    from .. import tracking
    from ..artifacts import save_modules
    from ..baseline import evaluate_em, train
    from ..prompts import first_questions

    cfg, out = p.baseline, Path(p.baseline.out_dir)
    torch.manual_seed(p.seed)
    tok = common.tokenizer(p)
    model = models.load_base(p, tok)
    train_rows = first_questions(common.rows(p, cfg.task, "train"), cfg.max_questions, cfg.question_order)
    val_rows = first_questions(common.rows(p, cfg.task, "val"), cfg.max_questions, cfg.question_order)[:cfg.eval_examples]
    dev = common.device()
    fp = common.fingerprint(p, "seed", "model", "baseline", "synth", files=(common.base_path(p), common.tokenizer_file(p)))
    train(cfg, model, tok, train_rows, val_rows, p.seed, tracking.log_metrics, progress, dev, fp)
    final = {"val_em": evaluate_em(model, tok, val_rows, dev), "steps": cfg.steps}
    tracking.log_metrics({"val_em": final["val_em"]}, cfg.steps)
    path = save_modules(common.baseline_path(p), {"base": model.cpu()}, metadata={"task": cfg.task})
    common.write_json(out / "metrics.json", final)
    common.write_json(out / "run.json", {"mlflow_run_id": tracking.active_run_id()})
    tracking.log_artifact(path, "baseline")
    print(f"baseline: val EM {final['val_em']:.3f}")
    return path


STAGE = Stage("baseline", baseline, family=lambda p: p.baseline.task.split("/")[0],
              run_name=lambda p: f"baseline-{p.baseline.task}")
