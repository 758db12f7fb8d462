"""`python -m perk.cli ARGS` without paying the interpreter's imports once per command.

A fault battery runs dozens of CLI commands whose own work takes a fraction of a second, while
importing torch, transformers and MLflow takes 4-8 s each time. Here a forkserver process imports
them once; every command is a child forked from it: a process of its own (working directory,
environment, stdout/stderr, exit status), running `perk.cli.main` as `python -m perk.cli` does.
An exception escaping main is printed as the interpreter would (a "Traceback" the tests look for)
and exits 1. Nothing runs torch code in the server, so forking it is safe.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_PRELOAD = ["perk.cli", "torch", "transformers", "mlflow", "pyarrow.parquet", "safetensors.torch",
            "perk.stages", "perk.evaluate", "perk.meta.engines"]
_ctx = None


def _context():
    global _ctx
    if _ctx is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read at import by huggingface_hub: set before the server
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(_PRELOAD)
    return _ctx


def _child(argv: list[str], cwd: str, env: dict, out: str, err: str) -> None:
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["perk", *argv]
    fo, fe = os.open(out, os.O_WRONLY), os.open(err, os.O_WRONLY)
    os.dup2(fo, 1)
    os.dup2(fe, 2)
    code = 1
    try:
        from perk.cli import main
        code = main(argv)
    except SystemExit as e:  # argparse errors exit 2 like the real entry point
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(argv: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Like subprocess.run([sys.executable, "-m", "perk.cli", *argv], capture_output=True, text=True)."""
    ctx = _context()
    with tempfile.TemporaryDirectory() as d:
        out, err = Path(d, "stdout"), Path(d, "stderr")
        out.touch()
        err.touch()
        p = ctx.Process(target=_child, args=(list(argv), str(cwd), dict(env), str(out), str(err)))
        p.start()
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            raise subprocess.TimeoutExpired(["perk", *argv], timeout)
        return subprocess.CompletedProcess(["perk", *argv], p.exitcode, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))
