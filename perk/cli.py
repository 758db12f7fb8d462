"""`perk <command>`: the command-line entry to every stage and benchmark.

`perk <stage>` calls `perk.stages.call(<stage>, params)`, the same entry dvc.yaml and the Prefect
flow use. `perk stack ...` is forwarded to the orchestration side (flows/stack.py) as a separate
process: the library never imports prefect, dvc or flows.
"""
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
    sp.add_argument("--no-progress", action="store_true", help="no progress output (a bar on a terminal, "
                    "a line every 10%% or minute elsewhere)")


def _load(args):
    from .config import load_params
    return load_params(args.params, args.param, cell=getattr(args, "cell", None))


def _stage_runner(name: str):
    def run(args) -> None:
        from . import stages
        from .tracking_guard import check_reachable
        check_reachable(os.environ.get("MLFLOW_TRACKING_URI", ""))  # a dead server: fail before loading anything
        p = _load(args)
        if name == "synth":
            _select_families(p, args)
        if name == "import":
            from .stages.imports import select
            select(p, args.only)
        if name == "position" and args.protocol:
            p.position_protocol = args.protocol
        out = stages.call(name, p, progress=not args.no_progress)
        for key, path in (out.items() if isinstance(out, dict) else [(name, out)]):
            print(f"{key}: {path}")
    return run


def _select_families(p, args) -> None:
    if args.out_dir:
        p.synth.out_dir = args.out_dir
    if args.tasks:
        wanted, known = set(args.tasks.split(",")), set(type(p.synth.tasks).model_fields)
        if wanted - known:
            raise ConfigError(f"--tasks: unknown task(s) {sorted(wanted - known)}; choose from {sorted(known)}")
        for family, spec in p.synth.tasks:
            spec.enabled = family in wanted


def cmd_report(args) -> None:
    from .report_md import report
    print(report(_load(args)), end="")


def _import_arguments(sp) -> None:
    sp.add_argument("--only", help="comma-separated dataset names (default: every enabled one)")


def cmd_bench(args) -> None:
    from .bench import run_bench
    run_bench(args.what, _load(args), args)


def run_stack(argv: list[str]) -> int:
    import subprocess
    # a separate process: prefect/mlflow live on the orchestration side, never imported here
    return subprocess.call([sys.executable, "-m", "flows.stack", *argv])


def build_parser() -> argparse.ArgumentParser:
    from .matrix import MATRIX_STAGES
    from .stages import ALIASES, ORDER

    ap = argparse.ArgumentParser(prog="perk", description="PERK experiment pipeline: synthesize long-context "
                                 "tasks, meta-train, evaluate and profile. Every stage reads params.yaml.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, helptext) in ORDER.items():
        aliases = [a for a, n in ALIASES.items() if n == name]
        sp = sub.add_parser(name, aliases=aliases, help=helptext, description=helptext + " Parameters come from "
                            "params.yaml; override with -P key=value. The same stage is `dvc repro "
                            f"{name}` and the Prefect deployment perk/{name}.")
        _common(sp)
        if name == "synth":
            sp.add_argument("--out-dir", help="output directory (default: synth.out_dir)")
            sp.add_argument("--tasks", help="comma-separated task families to generate (default: those enabled)")
        if name == "import":
            _import_arguments(sp)
        if name == "position":
            sp.add_argument("--protocol", metavar="NAME", help="only that protocol of params.yaml `position:` "
                            "(default: every one)")
        if name in MATRIX_STAGES:  # perk/matrix.py
            sp.add_argument("--cell", metavar="NAME", help="run as that cell of the task matrix (params.yaml "
                            "`matrix:`): its task, its own directories under matrix_dir/NAME, its overrides")
        sp.set_defaults(func=_stage_runner(name))

    sp = sub.add_parser("report", help="print the results tables (markdown) of the last pipeline run",
                        description="Markdown tables of the outputs in data/ (evaluate, meta-train, baseline, "
                        "profile): what the README's results section quotes.")
    _common(sp)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("bench", help="print throughput benchmarks",
                        description="Benchmarks that print figures: `synth` = synthesis throughput "
                        "(examples/s, tokens/s) at 4K and 32K-token contexts; `meta-step` = time per outer "
                        "step and peak memory of the full-graph and the memory-bounded (inner.bounded_memory) "
                        "meta-training path on the tiny and a larger config, each point in its own process.")
    _common(sp)
    sp.add_argument("what", choices=["synth", "meta-step", "import"], help="what to benchmark (import: seconds "
                    "to import one RULER file, --file)")
    sp.add_argument("--lengths", help="context lengths in tokens, comma-separated (synth default: 4096,32768; "
                    "meta-step default: --length)")
    sp.add_argument("--length", type=int, default=512, help="meta-step: one context length in tokens (default: %(default)s)")
    sp.add_argument("--file", default="../shared/benchmarks/ruler/niah_single_2/test_4096.jsonl",
                    help="import: the RULER JSONL file (default: %(default)s)")
    sp.add_argument("--chunk-tokens", type=int, default=64, help="import: chunk size (default: %(default)s)")
    sp.add_argument("--repeats", type=int, default=5, help="meta-step: measured outer steps (default: %(default)s)")
    sp.add_argument("--configs", default="tiny,larger", help="meta-step: model shapes, tiny = model section, "
                    "larger = 6 layers x 256 (default: %(default)s)")
    sp.add_argument("--micro-batch", type=int, default=0, help="meta-step: chunks per micro-batch of the bounded "
                    "path (default: inner.micro_batch, or 4 where that is 0)")
    sp.add_argument("--memory-limit-mb", type=int, default=0, help="meta-step: address space one point may add; "
                    "past it the point is recorded as oom (default: no limit)")
    sp.set_defaults(func=cmd_bench)
    sp = sub.add_parser("stack", help="start/stop the local Prefect + MLflow stack (`perk stack up --help`)",
                        description="Forwarded to `python -m flows.stack` (also installed as `perk-stack`): "
                        "up | down | status, see `perk stack -h` there.", add_help=False)
    sp.add_argument("stack_args", nargs=argparse.REMAINDER)
    return ap


def _user_errors() -> tuple[type, ...]:
    """Errors that are the user's to fix. Looked up only once one is raised: importing perk.meta
    (torch) up front would add seconds to every rejected parameter."""
    found = [ValueError, FileNotFoundError]  # incl. ConfigError, DataError, ArtifactError, TrainingDiverged
    for module, name in (("perk.model", "ModelLoadError"), ("perk.meta.inner", "InnerLoopError")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stack"]:  # everything after `stack`, -h included, is flows.stack's
        return run_stack(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"perk {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - sorted below: the user's to fix (exit 2) or not (exit 1)
        if os.environ.get("PERK_DEBUG"):
            raise
        if isinstance(err, _user_errors()):
            print(f"perk {args.command}: error: {err}", file=sys.stderr)
            return 2
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(f"perk {args.command}: unexpected error: {type(err).__name__}: {first}\n"
              f"  (this is a bug or an unhandled failure; rerun with PERK_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
