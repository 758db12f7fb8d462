"""Task names fail at config load listing the valid ones; a split with no rows for a task fails
naming the file, the split and the parameter that made it empty."""
from __future__ import annotations

from pathlib import Path

import pytest

from perk.config import ConfigError, load_params, valid_tasks
from perk.data.io import DataError

MICRO = Path(__file__).parent / "micro_params.yaml"


def test_valid_tasks_are_every_family_subtask():
    tasks = valid_tasks()
    assert {"needle/multikey", "babilong/qa1", "records/recall", "retrieval/random"} <= set(tasks)
    assert len(tasks) == len(set(tasks)) == 5 + 3 + 3 + 4


@pytest.mark.parametrize("override,key", [
    ("meta_train.task=recrods/recall", "meta_train.task"),
    ("baseline.task=needle", "baseline.task"),
    ("evaluate.tasks=[needle/multikey, retrieval/randm]", "evaluate.tasks"),
])
def test_unknown_task_names_the_key_and_every_valid_task(override, key):
    with pytest.raises(ConfigError) as err:
        load_params(MICRO, [override])
    msg = str(err.value)
    assert f"{key}:" in msg and "unknown task" in msg
    assert all(t in msg for t in valid_tasks())


def test_unknown_subtask_names_the_family_subtasks():
    with pytest.raises(ConfigError, match=r"records defines records/aggregate, records/recall, records/relation"):
        load_params(MICRO, ["meta_train.task=records/recal"])
    with pytest.raises(ConfigError, match="evaluate.tasks: .*at least one task"):
        load_params(MICRO, ["evaluate.tasks=[]"])


def _synth(tmp_path, tok, *over):
    from perk.data.synth import synthesize
    p = load_params(MICRO, [f"synth.out_dir={tmp_path}/synth", *over])
    synthesize(p.synth, tok, p.synth.out_dir, progress=False)
    return p


def test_empty_split_names_file_split_and_size(tmp_path, tiny_tokenizer):
    from perk.stages.common import rows
    p = _synth(tmp_path, tiny_tokenizer, "synth.tasks.needle.n_val=0")
    assert rows(p, "needle/multikey", "train")
    with pytest.raises(DataError, match=rf"{tmp_path}/synth/needle/val\.parquet: no rows at all in split 'val' "
                                        r"\(synth\.tasks\.needle\.n_val is 0\)"):
        rows(p, "needle/multikey", "val")


def test_subtask_without_rows_and_disabled_family_are_named(tmp_path, tiny_tokenizer):
    from perk.stages.common import rows
    # 2 training rows spread over 2 subtasks x 1 length: one each; 1 row over 2: one subtask gets none
    p = _synth(tmp_path, tiny_tokenizer, "synth.tasks.needle.subtasks=[multikey, single]",
               "synth.tasks.needle.n_val=1", "synth.tasks.needle.ask_all_keys=false")
    with pytest.raises(DataError, match=r"val\.parquet: no 'single' rows in split 'val' .*synth\.tasks\.needle\.n_val"):
        rows(p, "needle/single", "val")
    with pytest.raises(DataError, match=r"records/train\.parquet: .*synth\.tasks\.records\.enabled is false"):
        rows(p, "records/recall", "train")
    with pytest.raises(DataError, match=r"needle/multiquery.*not synthesized.*synth\.tasks\.needle\.subtasks"):
        rows(p, "needle/multiquery", "train")
