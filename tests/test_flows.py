"""The Prefect flow `perk` under prefect_test_harness: stage order, retries, MLflow runs, artifacts."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from perk import stages as perk_stages, tracking  # noqa: E402
from flows import pipeline  # noqa: E402

# Micro parameters: every family but needle off, a few examples, short contexts, small vocab.
MICRO = [
    "tokenizer.corpus_texts=200", "tokenizer.vocab_size=512",
    "synth.tasks.babilong.enabled=false", "synth.tasks.records.enabled=false",
    "synth.tasks.retrieval.enabled=false", "synth.tasks.needle.subtasks=[single]",
    "synth.tasks.needle.n_train=4", "synth.tasks.needle.n_val=2", "synth.tasks.needle.n_test=1",
    "synth.tasks.needle.train_lengths=[128]", "synth.tasks.needle.eval_lengths=[1024]",
    "synth.tasks.needle.depths=[0.5]", "synth.tasks.needle.chunk_tokens=32",
]


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def fake_stages(monkeypatch, tmp_path):
    """Stub stages in a registry of their own: `register(name, run, ...)` adds one in pipeline order."""
    calls, order, table = [], {}, {}

    def make(name, fail_times=0, exc=OSError):
        def stage(p, progress=True):
            calls.append(name)
            if calls.count(name) <= fail_times:
                raise exc(f"{name} flaky")
            tracking.log_metrics({f"{name.replace('-', '_')}_done": 1.0})
            return tmp_path / name
        return stage

    def register(name, run, family=None, shards=None):
        order[name] = (name, "")
        table[name] = perk_stages.Stage(name, run, family=lambda p: family, shards=shards)

    register("tokenizer", make("tokenizer"))
    register("synth", make("synth", fail_times=1))
    register("meta-train", make("meta-train"), family="needle")
    monkeypatch.setattr(perk_stages, "ORDER", order)
    monkeypatch.setattr(perk_stages, "get", lambda name: table[perk_stages.canonical(name)])
    return calls, register, make


def test_resolve_stages_order_and_errors(fake_stages):
    assert pipeline.resolve_stages(None) == ["tokenizer", "synth", "meta-train"]
    assert pipeline.resolve_stages(["meta_train", "tokenizer"]) == ["tokenizer", "meta-train"]
    assert pipeline.resolve_stages(["train"]) == ["meta-train"]
    assert pipeline.resolve_stages(None, target="synth") == ["tokenizer", "synth"]
    with pytest.raises(ValueError, match=r"unknown stage 'evaluate'; stages, in pipeline order: tokenizer, synth, "
                       r"meta-train; nothing was run"):
        pipeline.resolve_stages(["evaluate"])


def test_flow_runs_stages_in_order_with_retries_and_links_runs(harness, mlflow_store, fake_stages):
    calls, _, _ = fake_stages
    state = pipeline.perk_flow(stages=["meta-train", "synth"], params=["seed=3"], return_state=True)
    assert state.is_completed(), state
    assert calls == ["synth", "synth", "meta-train"]  # pipeline order; the OSError was retried
    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()], order_by=["start_time ASC"])
    # the failed first attempt of synth left a FAILED run, its retry a FINISHED one
    assert [(r.data.tags["stage"], r.info.status) for r in runs] == [
        ("synth", "FAILED"), ("synth", "FINISHED"), ("meta-train", "FINISHED")]
    flow_run_id = str(state.state_details.flow_run_id)
    for r in runs:
        assert r.data.tags["perk.flow_run_id"] == flow_run_id
        assert r.data.params["seed"] == "3"
    assert runs[-1].data.metrics["meta_train_done"] == 1.0
    by_stage = {r.data.tags["stage"]: r for r in runs}
    assert "PERK_FLOW_RUN_ID" not in os.environ

    from prefect.client.orchestration import get_client
    import anyio

    async def artifacts():
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    arts = anyio.run(artifacts)
    assert arts and all(r.info.run_id in arts[0].data for r in by_stage.values())


def test_one_mlflow_run_per_stage_call_with_several_families_enabled(harness, mlflow_store, monkeypatch):
    """Real stages (tokenizer, synth: no family) and a meta-train stub of family needle, under the
    shipped params (all four families enabled): one run per stage call, in its family's experiment."""
    monkeypatch.chdir(mlflow_store.tracking_uri.split("sqlite:///")[1].rsplit("/mlruns", 1)[0])
    real_get = perk_stages.get

    def meta_train(p, progress=True):
        tracking.log_metrics({"loss": 1.0}, 1)
        return "ok"
    stub = perk_stages.Stage("meta-train", meta_train, family=lambda p: p.meta_train.task.split("/")[0])
    monkeypatch.setattr(perk_stages, "get", lambda n: stub if perk_stages.canonical(n) == "meta-train" else real_get(n))
    overrides = [f"{k}={v}" for k, v in (("tokenizer.corpus_texts", 200), ("tokenizer.vocab_size", 512))] + \
        [f"synth.tasks.{f}.n_{s}={n}" for f in ("needle", "babilong") for s, n in (("train", 5), ("val", 1), ("test", 1))] + \
        [f"synth.tasks.{f}.enabled=false" for f in ("records", "retrieval")]
    state = pipeline.perk_flow(stages=["tokenizer", "synth", "meta-train"], params=overrides,
                               params_file=str(ROOT / "params.yaml"), return_state=True)
    assert state.is_completed(), state
    exps = {e.experiment_id: e.name for e in mlflow_store.search_experiments()}
    runs = mlflow_store.search_runs(list(exps))
    per = sorted((exps[r.info.experiment_id], r.data.tags["stage"], r.info.status) for r in runs)
    assert per == [("perk", "synth", "FINISHED"), ("perk", "tokenizer", "FINISHED"),
                   ("perk-needle", "meta-train", "FINISHED")], per
    assert all(r.data.tags["perk.flow_run_id"] == str(state.state_details.flow_run_id) for r in runs)


def test_permanent_errors_are_not_retried(harness, mlflow_store, fake_stages):
    calls, register, make = fake_stages
    register("synth", make("synth", fail_times=5, exc=ValueError))
    state = pipeline.perk_flow(stages=["synth"], return_state=True)
    assert state.is_failed()
    assert calls == ["synth"]
    run = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()])[0]
    assert run.info.status == "FAILED"


def test_unregistered_stage_fails_clearly(harness, mlflow_store, fake_stages):
    state = pipeline.perk_flow(stages=["profile"], return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="unknown stage 'profile'"):
        state.result()


def test_fan_out_hook_runs_one_task_per_cell(harness, mlflow_store, fake_stages, monkeypatch):
    calls, register, _ = fake_stages
    seen = []

    def evaluate(p, progress=True):
        seen.append(p.seed)
        return p.seed
    register("evaluate", evaluate, shards=perk_stages.Shards(split=lambda p: [["seed=1"], ["seed=2"]],
                                                             merge=lambda p, progress=True: "merged"))
    state = pipeline.perk_flow(stages=["evaluate"], return_state=True)
    assert state.is_completed() and state.result() == {"evaluate": "merged"}
    assert sorted(seen) == [1, 2]


@pytest.fixture()
def shard_runs(harness, fake_stages, monkeypatch):
    """A `perk/evaluate-shard` deployment on the harness server and an evaluate stub with two cells.
    No worker runs the shard flow runs: the real `run_deployment` creates them (SCHEDULED, as subflows
    of the coordinator) and a timer then sets each final, FAILED where its overrides are in `fail`."""
    import threading

    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Failed

    _, register, _ = fake_stages
    seen = {"stage": [], "merge": []}

    def evaluate(p, progress=True):
        seen["stage"].append(p.seed)
        return p.seed
    register("evaluate", evaluate, shards=perk_stages.Shards(
        split=lambda p: [["seed=1"], ["seed=2"]],
        merge=lambda p, progress=True: seen["merge"].append(p.seed) or "merged"))
    with get_client(sync_client=True) as client:
        client.create_deployment(flow_id=client.create_flow_from_name("perk"), name="evaluate-shard",
                                 parameters={"stages": ["evaluate"], "expand_cells": False})

    submitted, fail, timers = [], set(), []
    real = pipeline.run_deployment

    def run_deployment(name, **kw):
        run = real(name, **kw)
        submitted.append((name, kw, run.id))
        state = Failed(message="shard broke") if fail & set(kw["parameters"]["params"]) else Completed()

        def finish():
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run.id, state, force=True)
        timers.append(threading.Timer(0.5, finish))
        timers[-1].start()
        return run
    monkeypatch.setattr(pipeline, "run_deployment", run_deployment)
    monkeypatch.setattr(pipeline, "POLL_SECONDS", 0.1)
    yield submitted, fail, seen
    for t in timers:
        t.join()


def test_fan_out_submits_one_shard_flow_run_per_cell_then_merges(mlflow_store, shard_runs):
    from prefect.client.orchestration import get_client

    submitted, _, seen = shard_runs
    state = pipeline.perk_flow(stages=["evaluate"], params=["seed=7"], fan_out=True, return_state=True)
    assert state.is_completed(), state
    assert state.result() == {"evaluate": "merged"}
    assert [(name, kw["parameters"]) for name, kw, _ in submitted] == [
        ("perk/evaluate-shard", {"stages": ["evaluate"], "params": ["seed=7", f"seed={i}"],
                                 "params_file": "params.yaml", "expand_cells": False, "cell": None}) for i in (1, 2)]
    assert all(kw["timeout"] == 0 and kw["as_subflow"] for _, kw, _ in submitted)
    assert seen == {"stage": [], "merge": [7]}  # the shards ran elsewhere; the merge here, once
    with get_client(sync_client=True) as client:  # the shards are subflows of the coordinator
        parents = {client.read_task_run(client.read_flow_run(fid).parent_task_run_id).flow_run_id
                   for _, _, fid in submitted}
    assert parents == {state.state_details.flow_run_id}


def test_fan_out_fails_naming_the_failed_shard_and_does_not_merge(mlflow_store, shard_runs):
    submitted, fail, seen = shard_runs
    fail.add("seed=2")
    state = pipeline.perk_flow(stages=["evaluate"], fan_out=True, return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match=r"1 of 2 evaluate shard\(s\) did not complete") as err:
        state.result()
    assert "evaluate[1] ['seed=2']" in str(err.value) and "FAILED" in str(err.value)
    assert "evaluate[0]" not in str(err.value)
    assert len(submitted) == 2 and seen["merge"] == []


def test_expand_cells_false_runs_the_stage_once_as_a_shard(mlflow_store, shard_runs):
    submitted, _, seen = shard_runs
    state = pipeline.perk_flow(stages=["evaluate"], params=["seed=5"], expand_cells=False, return_state=True)
    assert state.is_completed() and state.result() == {"evaluate": "5"}
    assert seen == {"stage": [5], "merge": []} and not submitted


def test_flow_on_real_tokenizer_and_synth(harness, mlflow_store, tmp_path):
    overrides = MICRO + [f"tokenizer.out_dir={tmp_path}/tok", f"synth.out_dir={tmp_path}/synth"]
    state = pipeline.perk_flow(stages=["tokenizer", "synth"], params=overrides, return_state=True)
    assert state.is_completed(), state
    assert (tmp_path / "synth" / "needle" / "train.parquet").exists()
    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()])
    assert {r.data.tags["stage"] for r in runs} == {"tokenizer", "synth"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {mlflow_store.get_experiment(r.info.experiment_id).name for r in runs} == {"perk-needle"}


def test_flow_micro_pipeline_fans_evaluate_out_one_shard_at_a_time(harness, mlflow_store, tmp_path, monkeypatch):
    """Every stage up to evaluate on the micro profile; evaluate as one task per eval length, run one
    after the other (the flow run holds one GPU), then the merge summarizes the cached cells."""
    import json
    monkeypatch.chdir(tmp_path)  # stage outputs (data/...) are relative to the working directory
    micro = str(ROOT / "tests" / "micro_params.yaml")
    shards = perk_stages.get("evaluate").shards.split(pipeline.load(micro, []))
    assert shards == [["evaluate.only_lengths=[128]"], ["evaluate.only_lengths=[1024]"]]
    state = pipeline.perk_flow(target="evaluate", params_file=micro, return_state=True)
    assert state.is_completed(), state
    metrics = json.loads((tmp_path / "data" / "eval" / "metrics.json").read_text())
    assert {"em_128", "em_1024"} <= set(metrics["perk"]["needle_multikey"])
    assert {"em_128", "em_1024"} <= set(metrics["baseline"]["needle_multikey"])

    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()], order_by=["start_time ASC"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    ev = [r for r in runs if r.data.tags["stage"] == "evaluate"]
    assert [r.info.run_name for r in ev] == ["evaluate", "evaluate", "evaluate-merge"]
    assert [r.data.params["evaluate.only_lengths"] for r in ev[:2]] == ["[128]", "[1024]"]
    for a, b in zip(runs, runs[1:]):  # one job at a time: no two stage runs overlap
        assert a.info.end_time <= b.info.start_time, (a.info.run_name, b.info.run_name)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    import anyio

    async def task_runs():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    names = sorted(t.name for t in anyio.run(task_runs))
    assert names == sorted(["tokenizer", "synth", "import", "pretrain", "meta-train", "baseline", "evaluate[0]", "evaluate[1]",
                            "evaluate-merge"])


def test_bad_params_fail_the_flow_run_with_the_message_in_its_log(harness, mlflow_store):
    """What `prefect deployment run perk/meta-train --params '{"params": ["meta_train.bogus=1"]}'`
    runs: the flow fails before any stage, and its flow-run log names the key, without a traceback."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    state = pipeline.perk_flow(stages=["meta-train"], params=["meta_train.bogus=1"], return_state=True)
    assert state.is_failed()
    assert "meta_train.bogus: unknown key" in state.message
    import time
    text, deadline = "", time.monotonic() + 30
    while "unknown key" not in text and time.monotonic() < deadline:  # logs reach the server in batches
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
                any_=[state.state_details.flow_run_id])))
        text = "\n".join(log.message for log in logs)
        time.sleep(0.5)
    assert "meta_train.bogus: unknown key" in text, text
    assert "Traceback" not in text, text
    assert not mlflow_store.search_experiments(filter_string="name LIKE 'perk-%'")  # nothing ran


def test_flow_runs_stages_as_a_cell_of_the_task_matrix(harness, mlflow_store, fake_stages, tmp_path):
    """`cell=` is `perk <stage> --cell`: the stage sees the cell's task and directories; an unknown
    cell fails the flow run naming the cells there are."""
    import yaml
    _, register, _ = fake_stages
    seen = []
    register("meta-train", lambda p, progress=True: seen.append((p.cell, p.meta_train.task, p.meta_train.out_dir))
             or str(tmp_path), family="retrieval")
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    tree["matrix"] = {"retrieval-random": {"task": "retrieval/random"}}
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(tree))
    state = pipeline.perk_flow(stages=["meta-train"], params_file=str(f), cell="retrieval-random", return_state=True)
    assert state.is_completed(), state
    assert seen == [("retrieval-random", "retrieval/random", "data/matrix/retrieval-random/meta_train")]
    runs = mlflow_store.search_runs([e.experiment_id for e in mlflow_store.search_experiments()])
    assert [(r.info.run_name, r.data.tags["cell"]) for r in runs] == [
        ("matrix-meta-train@retrieval-random", "retrieval-random")]
    bad = pipeline.perk_flow(stages=["meta-train"], params_file=str(f), cell="qa1", return_state=True)
    assert bad.is_failed() and "no such cell; cells: retrieval-random" in bad.message
