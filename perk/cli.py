"""`perk <command>`: the command-line entry to every stage and benchmark."""
from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--params", default="params.yaml", metavar="FILE",
                    help="parameters file (default: %(default)s)")
    sp.add_argument("--param", "-P", action="append", default=[], metavar="KEY=VALUE",
                    help="override one parameter, e.g. -P synth.tasks.needle.n_train=100 (repeatable; values parsed as YAML)")


def _load(args):
    from .config import load_params
    return load_params(args.params, args.param)


def cmd_tokenizer(args) -> None:
    from . import stages
    print(f"tokenizer written to {stages.tokenizer(_load(args))}")


def cmd_synth(args) -> None:
    from . import stages
    p = _load(args)
    if args.out_dir:
        p.synth.out_dir = args.out_dir
    if args.tasks:
        wanted = set(args.tasks.split(","))
        unknown = wanted - set(type(p.synth.tasks).model_fields)
        if unknown:
            raise ConfigError(f"--tasks: unknown task(s) {sorted(unknown)}; choose from {sorted(type(p.synth.tasks).model_fields)}")
        for name, spec in p.synth.tasks:
            spec.enabled = name in wanted
    outs = stages.synth(p, progress=not args.no_progress)
    for name, path in outs.items():
        print(f"{name}: {path}")


STAGE_COMMANDS = [
    ("pretrain", "pretrain", "LM-pretrain the tiny base model on haystack text (no-op for a named model)."),
    ("train", "meta_train", "Meta-train PERK (inner loop encodes the context into LoRA; outer loop learns to "
     "answer from it); resumes from the last checkpoint after a kill."),
    ("baseline", "baseline", "Fine-tune the prompt-based long-context baseline (FT-ICR) on the same data."),
    ("evaluate", "evaluate", "Evaluate PERK and the baseline over task x length x depth; resumable per cell."),
    ("profile", "profile", "Profile peak memory and latency vs context length, PERK vs prompt-based."),
]


def _stage_runner(stage: str):
    def run(args) -> None:
        from . import stages
        if stage not in stages.STAGES:
            raise ConfigError(f"stage {stage!r} is not available in this version")
        out = stages.STAGES[stage](_load(args), progress=not args.no_progress)
        print(f"{stage}: {out}")
    return run


def cmd_bench(args) -> None:
    from .bench import run_bench
    run_bench(args.what, _load(args), args)


def cmd_stack(args) -> None:
    from flows.stack import StackError, main as stack_main  # prefect/mlflow only run as subprocesses
    try:
        stack_main(args)
    except StackError as err:
        raise ConfigError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="perk", description="PERK experiment pipeline: synthesize long-context "
                                 "tasks, meta-train, evaluate and profile. Every stage reads params.yaml.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("tokenizer", help="train the tiny tokenizer (or copy a named model's) into tokenizer.out_dir",
                        description="Train the byte-level BPE of the tiny profile on generator text, or copy "
                        "model.name's tokenizer from a local directory / the HF cache.")
    _common(sp)
    sp.add_argument("--no-progress", action="store_true", help="accepted for symmetry with other stages")
    sp.set_defaults(func=cmd_tokenizer)

    sp = sub.add_parser("synth", help="synthesize long-context tasks into Parquet",
                        description="Synthesize needle / babilong / records / retrieval tasks into "
                        "{out_dir}/{task}/{train,val,test}.parquet. Sizes, lengths, depths and chunk size come "
                        "from the synth section of params.yaml; lengths are counted with the tokenizer in "
                        "tokenizer.out_dir (run `perk tokenizer` first).")
    _common(sp)
    sp.add_argument("--out-dir", help="output directory (default: synth.out_dir)")
    sp.add_argument("--tasks", help="comma-separated task families to generate (default: those enabled in params)")
    sp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sp.set_defaults(func=cmd_synth)

    for name, stage, helptext in STAGE_COMMANDS:
        sp = sub.add_parser(name, help=helptext, description=helptext + " Parameters come from params.yaml "
                            f"(section {stage!r} and the sections it builds on); override with -P key=value.")
        _common(sp)
        sp.add_argument("--no-progress", action="store_true", help="hide progress bars")
        sp.set_defaults(func=_stage_runner(stage))

    sp = sub.add_parser("bench", help="print throughput benchmarks",
                        description="Benchmarks that print figures: `synth` = synthesis throughput "
                        "(examples/s, tokens/s) at 4K and 32K-token contexts; `meta-step` = time per outer "
                        "step and peak memory of the full-graph and the memory-bounded (inner.bounded_memory) "
                        "meta-training path on the tiny and a larger config, each point in its own process.")
    _common(sp)
    sp.add_argument("what", choices=["synth", "meta-step"], help="what to benchmark")
    sp.add_argument("--lengths", help="context lengths in tokens, comma-separated (synth default: 4096,32768; "
                    "meta-step default: --length)")
    sp.add_argument("--length", type=int, default=512, help="meta-step: one context length in tokens (default: %(default)s)")
    sp.add_argument("--repeats", type=int, default=5, help="meta-step: measured outer steps (default: %(default)s)")
    sp.add_argument("--configs", default="tiny,larger", help="meta-step: model shapes, tiny = model section, "
                    "larger = 6 layers x 256 (default: %(default)s)")
    sp.add_argument("--micro-batch", type=int, default=0, help="meta-step: chunks per micro-batch of the bounded "
                    "path (default: inner.micro_batch, or 4 where that is 0)")
    sp.add_argument("--memory-limit-mb", type=int, default=0, help="meta-step: address space one point may add; "
                    "past it the point is recorded as oom (default: no limit)")
    sp.set_defaults(func=cmd_bench)
    sp = sub.add_parser("stack", help="start/stop the local Prefect + MLflow stack",
                        description="`perk stack up`: Prefect server, work pools 'gpu' (one worker per GPU) and "
                        "'control' (fan-out coordinators), the perk deployments, the workers and the MLflow tracking "
                        "server on 127.0.0.1 (pids and logs in .prefect/stack/); "
                        "`perk stack down` stops them all; `perk stack status` lists them.")
    from flows.stack import add_arguments
    add_arguments(sp)
    sp.set_defaults(func=cmd_stack)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .meta.inner import InnerLoopError
    from .model import ModelLoadError
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ModelLoadError, InnerLoopError) as err:  # incl. ConfigError, DataError
        if os.environ.get("PERK_DEBUG"):
            raise
        print(f"perk {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perk {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
