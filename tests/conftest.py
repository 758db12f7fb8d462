"""Shared fixtures. `tiny_tokenizer`: one small byte-level BPE per test session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from perk.data.lexicon import all_words
    from perk.data.synth import sample_corpus
    from perk.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer") / "tiny"
    train_tokenizer(sample_corpus(400, 0), 1024, out, must_include=all_words())
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from perk.tokenizer import load_tokenizer

    return load_tokenizer(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory):
    """An MLflow sqlite store migrated once per session; tests get copies (migration takes seconds)."""
    import mlflow
    d = tmp_path_factory.mktemp("mlflow-template")
    mlflow.MlflowClient(f"sqlite:///{d}/mlflow.db").search_experiments()
    return d / "mlflow.db"


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch, empty_mlflow_db):
    """A fresh MLflow store under tmp_path/mlruns, made the default of perk.tracking."""
    import shutil

    import mlflow

    from perk import tracking
    (tmp_path / "mlruns").mkdir()
    shutil.copy(empty_mlflow_db, tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PERK_ROOT", str(tmp_path))
    yield mlflow.MlflowClient(tracking.setup())
    while mlflow.active_run():
        mlflow.end_run()
