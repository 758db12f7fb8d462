"""params.yaml validation: defaults load, and bad values name the key and what is allowed."""
from pathlib import Path

import pytest
import yaml

from perk.config import ConfigError, Params, load_params, parse_override, validate_params

ROOT = Path(__file__).resolve().parents[1]


def test_repo_params_validate():
    p = load_params(ROOT / "params.yaml")
    assert p.synth.tasks.needle.num_keys >= 4
    assert max(p.synth.tasks.needle.eval_lengths) >= 8 * max(p.synth.tasks.needle.train_lengths)


def test_defaults_are_valid():
    Params()


@pytest.mark.parametrize("tree, needle", [
    ({"synth": {"tasks": {"needle": {"bogus": 1}}}}, "synth.tasks.needle.bogus: unknown key"),
    ({"synth": {"tasks": {"needle": {"n_train": "many"}}}}, "synth.tasks.needle.n_train"),
    ({"synth": {"tasks": {"needle": {"depths": [0.5, 1.5]}}}}, "depths must be a non-empty list of fractions"),
    ({"synth": {"tasks": {"babilong": {"subtasks": ["qa9"]}}}}, "choose from ['qa1', 'qa2', 'qa3']"),
    ({"synth": {"tasks": {"needle": {"train_lengths": [1024], "eval_lengths": [2048]}}}}, "at least 8x"),
    ({"inner": {"engine": "jax"}}, "'torch_func' or 'higher'"),
    ({"inner": {"steps": 0}}, "inner.steps"),
    ({"lora": {"rank": 0}}, "lora.rank"),
    ({"model": {"n_embd": 100, "n_head": 3}}, "divisible"),
])
def test_bad_params_name_the_key(tree, needle):
    with pytest.raises(ConfigError) as info:
        validate_params(tree, "test.yaml")
    assert needle in str(info.value)


def test_overrides_apply_and_validate(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({"synth": {"seed": 3}}))
    p = load_params(f, ["synth.seed=7", "synth.tasks.needle.depths=[0.1]"])
    assert p.synth.seed == 7 and p.synth.tasks.needle.depths == [0.1]
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_params(f, ["synth.seed"])
    with pytest.raises(ConfigError, match="synth.seed"):
        load_params(f, ["synth.seed=-1"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(bad)
