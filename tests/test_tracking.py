"""perk.tracking against a throwaway sqlite store: params, tags, status, re-entrancy, artifacts."""

import os
import subprocess
import sys

import pytest

from perk import tracking
from perk.config import Params


@pytest.fixture()
def store(mlflow_store, monkeypatch):
    monkeypatch.setenv("PERK_FLOW_RUN_ID", "flow-123")
    return mlflow_store


def test_tracking_does_not_import_orchestrators():
    import ast
    tree = ast.parse(open(tracking.__file__).read())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in getattr(n, "names", [])} | {n.module.split(".")[0] for n in ast.walk(tree)
                                                 if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"prefect", "dvc"}


def test_uri_defaults_to_sqlite_under_root(store, tmp_path):
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/mlruns/mlflow.db"


def test_flatten_and_hash():
    assert tracking.flatten({"model": {"n_embd": 128, "arch": "gpt2"}, "seed": 0}) == {
        "model.n_embd": 128, "model.arch": "gpt2", "seed": 0}
    assert tracking.params_hash({"a": 1, "b": 2}) == tracking.params_hash({"b": 2, "a": 1})
    assert tracking.params_hash(Params()) != tracking.params_hash(Params(seed=1))


def test_run_logs_params_tags_metrics_and_artifacts(store, tmp_path):
    p = Params()
    p.synth.tasks.babilong.enabled = p.synth.tasks.records.enabled = p.synth.tasks.retrieval.enabled = False
    (tmp_path / "note.txt").write_text("hi")
    with tracking.run("meta-train", p, tags={"extra": 1}, system_metrics=False) as r:
        tracking.log_metrics({"loss": 2.5}, step=3)
        tracking.log_artifact(tmp_path / "note.txt")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        tracking.log_figure(fig, "plots/line.png")
    run = store.get_run(r.info.run_id)
    assert run.info.status == "FINISHED"
    assert store.get_experiment(run.info.experiment_id).name == "perk-needle"
    assert run.data.params["model.n_embd"] == "128"
    assert run.data.params["synth.tasks.needle.train_lengths"] == "[512]"
    t = run.data.tags
    assert (t["stage"], t["method"], t["engine"], t["model"], t["context_length"]) == (
        "meta-train", "perk", "torch_func", "tiny", "512")
    assert t["params_hash"] == tracking.params_hash(p) and t["perk.flow_run_id"] == "flow-123"
    assert t["extra"] == "1" and len(t["git_commit"]) >= 7
    assert run.data.metrics["loss"] == 2.5
    arts = {a.path for a in store.list_artifacts(r.info.run_id)} | {
        a.path for a in store.list_artifacts(r.info.run_id, "plots")}
    assert {"note.txt", "plots/line.png"} <= arts
    assert str(tmp_path / "mlruns" / "artifacts") in run.info.artifact_uri
    assert r.info.run_id in tracking.RUN_IDS


def test_failed_body_marks_run_failed_and_reraises(store):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.run("baseline", {"seed": 0}, task="needle", system_metrics=False) as r:
            raise RuntimeError("boom")
    run = store.get_run(r.info.run_id)
    assert run.info.status == "FAILED" and run.data.tags["method"] == "baseline"


def test_a_run_opened_inside_another_is_nested_never_merged(store):
    with tracking.run("synth", Params(), system_metrics=False) as outer:
        with tracking.run("evaluate", Params(), system_metrics=False) as inner:
            assert inner.info.run_id != outer.info.run_id
    assert store.get_run(inner.info.run_id).data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert store.get_run(outer.info.run_id).info.status == "FINISHED"


def test_system_metrics_logged(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    import time
    with tracking.run("profile", {"seed": 0}) as r:
        time.sleep(1.5)
    assert any(k.startswith("system/") for k in store.get_run(r.info.run_id).data.metrics)


def test_logging_outside_a_stage_call_invents_no_run(store):
    import mlflow
    tracking.log_metrics({"x": 1.0}, 0)  # e.g. a non-zero torchrun rank, or a notebook
    tracking.set_tags({"a": "b"})
    assert mlflow.active_run() is None
    assert not store.search_runs([e.experiment_id for e in store.search_experiments()])


def test_side_by_side_first_runs_on_a_fresh_store_all_open_it(tmp_path):
    # four processes opening one new sqlite store at once: without the file lock in tracking.setup
    # all four failed in alembic's migration (measured), which broke parallel DVC cells / workers
    code = ("from perk import tracking; import mlflow; tracking.setup(); "
            "print(len(mlflow.search_experiments()))")
    env = {**os.environ, "PERK_ROOT": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=300)  # reads both pipes: a long traceback cannot block the child
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "1"  # the store's Default experiment, created once
