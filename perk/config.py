"""Typed parameters for every params.yaml section: the one home of defaults.

`load_params(path, overrides)` reads params.yaml, applies `a.b.c=value` overrides and
validates. Any unknown key, wrong type or out-of-range value raises `ConfigError` naming the
key and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator


class ConfigError(ValueError):
    """Invalid parameters; the message names the key and what is expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- synthesis

Depth = float


class TaskSpec(Section):
    """Shared by every task family: sizes, lengths, depths, chunking."""

    enabled: bool = True
    subtasks: list[str]
    n_train: int = Field(200, ge=0)
    n_val: int = Field(50, ge=0)
    n_test: int = Field(10, ge=0, description="examples per (eval length, depth) cell")
    train_lengths: list[int] = Field(default_factory=lambda: [512])
    eval_lengths: list[int] = Field(default_factory=lambda: [512, 1024, 2048, 4096])
    depths: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    chunk_tokens: int = Field(64, ge=8, le=8192)

    @field_validator("train_lengths", "eval_lengths")
    @classmethod
    def _lengths(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("must list at least one length")
        if any(x < 16 for x in v):
            raise ValueError(f"lengths are token counts >= 16, got {v}")
        return v

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 <= d <= 1.0 for d in v):
            raise ValueError(f"depths must be a non-empty list of fractions in [0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _grid(self):
        allowed = self.allowed_subtasks()
        bad = [s for s in self.subtasks if s not in allowed]
        if bad or not self.subtasks:
            raise ValueError(f"subtasks {bad or self.subtasks} not allowed; choose from {sorted(allowed)}")
        if max(self.eval_lengths) < 8 * max(self.train_lengths):
            raise ValueError(
                f"eval_lengths must reach at least 8x the longest train length "
                f"({8 * max(self.train_lengths)}), got max {max(self.eval_lengths)}")
        if min(self.train_lengths) < self.chunk_tokens:
            raise ValueError(f"train_lengths ({self.train_lengths}) must be >= chunk_tokens ({self.chunk_tokens})")
        return self

    @classmethod
    def allowed_subtasks(cls) -> set[str]:
        return set()


class NeedleSpec(TaskSpec):
    subtasks: list[str] = Field(default_factory=lambda: ["single", "multikey", "multivalue", "multiquery", "passkey"])
    n_train: int = Field(10000, ge=0, description="split evenly over the subtasks")
    n_val: int = Field(250, ge=0)
    num_keys: int = Field(4, ge=1, le=64, description="needles (facts) per context for multikey/multiquery")
    num_values: int = Field(4, ge=1, le=16, description="values per key for multivalue")
    num_queries: int = Field(2, ge=1, le=16, description="keys asked at once for multiquery")
    ask_all_keys: bool = Field(True, description="train/val multikey: one row per key of each context "
                               "(same context, every key asked), so one encode serves num_keys questions")
    value_order: Literal["context", "sorted"] = Field(
        "context", description="multivalue's and multiquery's answer order: as the context holds them (RULER; "
        "multiquery's question lists its keys in that order too), or "
        "`sorted` alphabetically, an order fixed by the values alone: chunks are encoded one by one, so where "
        "each value sat is what the adapter stores least of")

    @classmethod
    def allowed_subtasks(cls) -> set[str]:
        return {"single", "multikey", "multivalue", "multiquery", "passkey"}


class BabilongSpec(TaskSpec):
    subtasks: list[str] = Field(default_factory=lambda: ["qa1", "qa2", "qa3"])
    n_val: int = Field(32, ge=0)
    n_test: int = Field(5, ge=0, description="examples per (eval length, depth) cell")
    num_facts: int = Field(8, ge=2, le=200, description="bAbI story sentences per example")
    ask_all: bool = Field(True, description="train/val: one row per question the story answers (qa1: every "
                          "person who moved), same context, so one encode serves all of them")
    answer_prefix: bool = Field(False, description="RULER-style answer prefix ('Mary is in the'): the asked "
                                "name sits as far before the answer as in the story's sentence")

    @classmethod
    def allowed_subtasks(cls) -> set[str]:
        return {"qa1", "qa2", "qa3"}


class RecordsSpec(TaskSpec):
    subtasks: list[str] = Field(default_factory=lambda: ["recall", "relation", "aggregate"])
    n_val: int = Field(32, ge=0)
    n_test: int = Field(5, ge=0, description="examples per (eval length, depth) cell")
    ask_records: int = Field(3, ge=0, le=64, description="train/val recall: every field of this many records "
                             "of each context is asked (the relevant one first, then distractors), one encode "
                             "serving all of them; 0: one question per context")
    ask_pairs: int = Field(0, ge=0, le=32, description="train/val relation: this many pairs of the context's "
                           "records asked, each in both orders (the gold pair first, then pairs of distractors "
                           "with different grades), one encode serving all, so half the answers are 'yes' within "
                           "every context and the yes/no prior cannot pay; 0: one question per context")
    aggregate_ops: list[Literal["max", "min", "average"]] = Field(
        default_factory=lambda: ["max", "min", "average"], min_length=1,
        description="aggregate: the operations a question may ask (a curriculum can start with max/min)")
    ask_all_ops: bool = Field(False, description="train/val aggregate: the group asked with every operation of "
                              "aggregate_ops, one encode serving all")

    @classmethod
    def allowed_subtasks(cls) -> set[str]:
        return {"recall", "relation", "aggregate"}


POSITIONS = ("first", "middle", "last", "random")  # gold-document positions: retrieval subtasks, protocol rows


class RetrievalSpec(TaskSpec):
    subtasks: list[str] = Field(default_factory=lambda: list(POSITIONS))
    n_val: int = Field(32, ge=0)
    n_test: int = Field(5, ge=0, description="examples per (eval length, depth) cell")
    ask_docs: int = Field(1, ge=1, le=64, description="train/val: documents of each context asked about (the "
                          "gold one first, then distractors, each by its own purpose), one encode serving all")
    hard_negatives: float = Field(0.7, ge=0, le=1, description="fraction of distractor documents whose purpose "
                                  "differs from the gold one in one word of four (the rest: random purposes)")
    name_pool: Literal["split", "shared"] = Field("split", description="API code names: split (val/test names "
                                                 "never occur in training) or shared (held out are the pairings)")

    @classmethod
    def allowed_subtasks(cls) -> set[str]:
        return set(POSITIONS)


class TasksConfig(Section):
    needle: NeedleSpec = Field(default_factory=NeedleSpec)
    babilong: BabilongSpec = Field(default_factory=BabilongSpec)
    records: RecordsSpec = Field(default_factory=RecordsSpec)
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec)

    def enabled(self) -> dict[str, TaskSpec]:
        return {name: spec for name, spec in self if spec.enabled}


class SynthConfig(Section):
    seed: int = Field(1234, ge=0)
    out_dir: str = "data/synth"
    tasks: TasksConfig = Field(default_factory=TasksConfig)


class TokenizerConfig(Section):
    out_dir: str = "data/tokenizer"
    vocab_size: int = Field(6144, ge=256, le=262144)
    corpus_texts: int = Field(4000, ge=100, description="generator texts sampled to train the tiny tokenizer")
    digit_group: int = Field(1, ge=1, le=3, description="digits per number token, left to right (1: every digit "
                             "its own token; 3: as cl100k, '9828002' -> '982' '800' '2', every group in the vocabulary)")


# ---------------------------------------------------------------- benchmark imports

IMPORT_FORMATS = ("ruler", "babilong", "perk_reference")


class ImportFile(Section):
    """One source of one split: a local file, or an HF dataset read with `datasets`."""
    path: str | None = Field(None, description="local .jsonl / .json / .parquet file (relative to the repo root)")
    hf_dataset: str | None = Field(None, description="HF dataset name, e.g. RMT-team/babilong (needs the hub or "
                                   "the HF datasets cache)")
    hf_config: str | None = Field(None, description="HF config, e.g. 1k")
    hf_split: str | None = Field(None, description="HF split, e.g. qa1")
    length: int | None = Field(None, ge=16, description="nominal length (target_tokens); None: from the file "
                               "name (test_4096 -> 4096, test_2k -> 2000) or the HF config")
    limit: int | None = Field(None, ge=1, description="import only the first N records")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError("give exactly one of path or hf_dataset")
        return self


class ImportDataset(Section):
    """A benchmark subset imported into {imports.out_dir}/{name}/{split}.parquet; `name` is then a
    task like the synthesized ones (meta_train.task, baseline.task, evaluate.tasks)."""
    name: str = Field(description="family/subset, e.g. ruler/niah_single_2; the family must not be a synth family")
    enabled: bool = Field(True, description="imported by `perk import` / the import stage")
    format: Literal["ruler", "babilong", "perk_reference"]
    files: dict[Literal["train", "val", "test"], list[ImportFile]]
    chunk_tokens: int = Field(64, ge=8, le=8192, description="re-chunking of long inputs (reference files "
                              "keep their own chunks: one record/document per chunk)")
    tokens_to_generate: int = Field(128, ge=0, description="RULER: tokens its `length` field adds to the prompt")
    length_tolerance: float = Field(0.25, gt=0, le=1, description="a record whose measured/declared length ratio "
                                    "(BABILong: measured length) is this far (relative) from the file's median is "
                                    "skipped and counted; the dev sets' legitimate spread with the tiny tokenizer "
                                    "is <= 0.14 (a GPT-2 tokenizer: set ~0.01)")
    on_bad_record: Literal["skip", "error"] = Field("skip", description="content problems (needle not found, "
                                                    "length mismatch): counted skip or error")
    max_skip_fraction: float = Field(0.05, ge=0, le=1, description="more skipped records per file is an error")
    ask_every_key: bool = Field(False, description="train split: one more question per other key of a record, "
                                "same context, so one encode serves all. RULER: per other needle key (RULER's "
                                "template, that needle's value the answer); BABILong qa1: per other person who "
                                "moves (`Where is P?`, P's last move the answer). Every fact of a context is a "
                                "training target, as it is unknown at encode time which one will be asked")
    instruction: bool = Field(False, description="RULER: keep its instruction line in front of the question "
                              "(off: PERK's question prompt holds just the question)")
    metric: Literal["auto", "string_match_all", "string_match_part", "babilong_label", "exact_match"] = Field(
        "auto", description="the benchmark's own metric reported beside EM; auto: RULER qa_* string_match_part, "
        "other RULER string_match_all, BABILong (and reference BABILong) babilong_label, else exact_match")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        fam, _, sub = v.partition("/")
        if not fam or not sub or "/" in sub or not all(c.isalnum() or c in "_-." for c in fam + sub):
            raise ValueError(f"name must be family/subset (letters, digits, _ - .), got {v!r}")
        if fam in TasksConfig.model_fields:
            raise ValueError(f"family {fam!r} is a synth family; pick another (e.g. {fam}_bench/{sub})")
        return v

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict) -> dict:
        if not v or not any(v.values()):
            raise ValueError("list at least one file for one split")
        return v


def _bench(name: str, fmt: str, root: str, train: str, val: str, tests: list[str], chunk: int = 64) -> dict:
    return {"name": name, "format": fmt, "chunk_tokens": chunk,
            "files": {"train": [{"path": f"{root}/{train}"}], "val": [{"path": f"{root}/{val}"}],
                      "test": [{"path": f"{root}/{t}"} for t in tests]}}


def _default_imports() -> list[ImportDataset]:
    # The development sets in ../shared/benchmarks (README there) and the reference samples.
    b = "../shared/benchmarks"
    r = "../shared/reference/perk-data-samples"
    sets = [_bench(f"ruler/{t}", "ruler", f"{b}/ruler/{t}", "train_1024.jsonl", "val_1024.jsonl",
                   ["test_1024.jsonl", "test_2048.jsonl", "test_4096.jsonl"]) for t in ("niah_single_2", "niah_multikey_1")]
    sets[1]["ask_every_key"] = True  # multikey: every needle a training question (experiments/IMPORTS.md run H)
    sets.append(_bench("babilong_bench/qa1", "babilong", f"{b}/babilong/qa1", "train_1k.jsonl", "val_1k.jsonl",
                       ["test_1k.jsonl", "test_2k.jsonl", "test_4k.jsonl"]))
    sets[2]["ask_every_key"] = True  # every person's last move a training question (experiments/IMPORTS.md run I2)
    for kind, subs in (("babilong", ("qa1", "qa2", "qa3")), ("student_records", ("recall", "relation", "allgregation")),
                       ("longgorilla", ("huggingface_api",))):
        for s in subs:
            sets.append({"name": f"perkref_{kind}/{s}", "format": "perk_reference", "chunk_tokens": 256,
                         "files": {"test": [{"path": f"{r}/{kind}/{s}.json"}]}})
    return [ImportDataset.model_validate(d) for d in sets]


class ImportsConfig(Section):
    out_dir: str = "data/imports"
    tokenizer_texts: int = Field(0, ge=0, description="source texts of the enabled datasets' train files added "
                                 "to the tiny tokenizer's corpus (0: the tokenizer sees generator text only)")
    absent: Literal["skip", "error"] = Field("skip", description="a dataset none of whose local files exists "
                                             "(e.g. the ../shared dev sets on a fresh clone): skip: the import stage "
                                             "skips it loudly (printed, in index.json and MLflow), error: fail; a "
                                             "dataset with only some files present, or named by --only, always fails")
    haystack_swap: float = Field(0.0, ge=0, le=1, description="RULER datasets, train split only: the fraction "
                                 "of records whose essay haystack (one prefix shared by every record) is replaced "
                                 "by prose from haystack_source, needles kept at their depths "
                                 "(perk/data/imports/haystack_swap.py, experiments/IMPORTS.md)")
    val_lengths: list[int] = Field(default_factory=list, description="RULER datasets with a val split: also "
                                   "write split val_<L> per length L, every val record's haystack replaced by "
                                   "val_haystack_source prose of L context tokens, the needles at their depths (the "
                                   "dev sets validate at the train length only; this lets a choice see length "
                                   "extrapolation without reading a test file)")
    val_haystack_source: str = Field("../shared/benchmarks/babilong/qa1/val_1k.jsonl",
                                     description="BABILong-format file whose book text fills the val_<L> splits: "
                                     "text no training stage reads, as the test haystack beyond the train "
                                     "length is (the train-side haystack_source is partly seen in training)")
    haystack_source: str = Field("../shared/benchmarks/babilong/qa1/train_1k.jsonl",
                                 description="BABILong-format file whose `input` book text (bAbI facts removed) "
                                 "the haystack swap draws from")
    ask_every_key: bool | None = Field(None, description="overrides every dataset's ask_every_key (null: each "
                                       "dataset's own; -P imports.ask_every_key=false imports one question per record)")
    datasets: list[ImportDataset] = Field(default_factory=_default_imports)

    @model_validator(mode="after")
    def _unique(self):
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dataset names must be unique, repeated: {dup}")
        return self

    def get(self, name: str) -> ImportDataset | None:
        return next((d for d in self.datasets if d.name == name), None)


# ---------------------------------------------------------------- model, memory, inner loop

class ModelConfig(Section):
    name: str = Field("tiny", description="'tiny' (built from this config) or an HF model id / local directory")
    shape: str | None = Field(None, description="build a published architecture with RANDOM weights, no "
                              "download: a name in profiles/shapes/ (qwen2.5-0.5b, gpt2-small) or a path to an "
                              "HF config.json. Memory and latency depend on the shape, not the weights. The base "
                              "is frozen like a named model's; leave model.name at 'tiny'")
    shape_overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="config fields replaced in the shape, e.g. {num_hidden_layers: 1} "
        "for a CPU-sized test of the same architecture")
    arch: Literal["qwen2", "gpt2"] = "qwen2"
    n_layer: int = Field(2, ge=1, le=64)
    n_embd: int = Field(128, ge=16, le=8192)
    n_head: int = Field(4, ge=1, le=128)
    max_positions: int = Field(16384, ge=64)
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    local_layers: int | None = Field(None, ge=0, description="tiny qwen2: bottom layers with sliding-window "
                                     "attention (a fact and its question then read alike locally, which helps "
                                     "binding); None: 1 for qwen2, 0 for gpt2")
    sliding_window: int = Field(3, ge=1, description="tokens a local layer attends to (itself included)")
    input_embeddings: Literal["learned", "frozen_random"] = Field(
        "frozen_random", description="tiny only. 'frozen_random': untie the input embeddings from the output head "
        "and keep them at a fixed random code, so a word never seen in training (a held-out key) is "
        "drawn from the same distribution as every word the model learned to read")
    input_embedding_std: float = Field(0.11, gt=0, description="std of the frozen random input code "
                                       "(0.11: the scale learned embeddings reach in pretraining)")
    head_init: Literal["default", "code"] = Field(
        "code", description="tiny frozen_random only: initial output head. 'code': a copy of the input "
        "code (still trained), so a head that moves a token's code to the output already predicts that "
        "token (the copy an in-context recall circuit needs)")
    copy_init: bool = Field(True, description="tiny qwen2 (ignored for gpt2): initialise the value and output projections of "
                            "the full-attention layers to the identity, so attending to a token moves its "
                            "representation (with head_init 'code': its prediction) to the reading position; "
                            "a copy path from step 0, which a recall circuit otherwise needs thousands of steps to form")

    @model_validator(mode="after")
    def _heads(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.shape is not None and self.name != "tiny":
            raise ValueError(f"set model.shape ({self.shape!r}) or model.name ({self.name!r}), not both")
        if self.shape_overrides and self.shape is None:
            raise ValueError("model.shape_overrides needs model.shape")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # Unset shape keys are left out, so params dumps (and the checkpoint/cell fingerprints hashed
        # from them) stay what they were before these keys existed: no finished work is invalidated.
        out = handler(self)
        if isinstance(out, dict) and self.shape is None:
            out.pop("shape", None)
            if not self.shape_overrides:
                out.pop("shape_overrides", None)
        return out

    @property
    def frozen_base(self) -> bool:
        """A named or shape-only base stands for a pretrained model: frozen, never pretrained here."""
        return self.name != "tiny" or self.shape is not None


class LoraConfig(Section):
    rank: int = Field(16, ge=1, le=4096)
    alpha: float = Field(16.0, gt=0)
    rslora: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["auto"] = "auto"
    top_layers: int | None = Field(None, ge=1, description="adapt only the top N layers (None: all)")


INNER_LR_LIMIT = {"adam": 1.0, "sgd": 100.0}


class InnerConfig(Section):
    engine: Literal["torch_func", "higher"] = "torch_func"
    optimizer: Literal["sgd", "adam"] = "adam"
    steps: int = Field(4, ge=1, le=64)
    lr_init: float = Field(1e-2, gt=0)
    lr_min: float = Field(1.234e-4, gt=0, description="clamp of the learned step sizes (e^-9)")
    lr_max: float = Field(0.3679, gt=0, description="(e^-1)")
    betas: tuple[float, float] = (0.9, 0.95)
    differentiate_last: int = Field(2, ge=0)
    first_order: bool = False
    micro_batch: int = Field(0, ge=0, description="chunks per micro-batch (0: all chunks at once)")
    weighting: Literal["none", "net"] = "net"
    weight_gate: float = Field(0.0, ge=0, description="weighting net: a token whose weight is below this gets "
                               "weight 0 (0: off); the filler of a context then adds nothing to the inner "
                               "gradient however long the context, as when it was memorised in training")
    recency: bool = Field(False, description="weighting net: also scale each token's weight by exp(b * x), x its "
                          "place in the context (0 first token, 1 last) and b one meta-learned scalar starting at 0, "
                          "so a later fact can outweigh an earlier one about the same thing (a person's last move: "
                          "BABILong qa1); the net alone sees one chunk and cannot tell which fact is the last")
    grad_checkpointing: bool = False
    bounded_memory: bool = Field(False, description="meta-training memory independent of the context length: "
                                 "second-order steps keep no graph over the chunks, the outer backward recomputes "
                                 "them micro_batch chunks at a time (same meta-gradients, ~1 extra forward+backward "
                                 "per differentiated step; perk/meta/bounded.py). Needs engine torch_func and "
                                 "micro_batch >= 1")

    @model_validator(mode="after")
    def _ranges(self):
        if self.bounded_memory and self.engine != "torch_func":
            raise ValueError("inner.bounded_memory: true is implemented for inner.engine: torch_func only, "
                             f"got inner.engine: {self.engine}")
        if self.bounded_memory and self.micro_batch < 1:
            raise ValueError("inner.bounded_memory: true needs inner.micro_batch >= 1 (chunks recomputed at a "
                             "time in the outer backward), got inner.micro_batch: 0")
        if not self.lr_min <= self.lr_init <= self.lr_max:
            raise ValueError(f"need lr_min <= lr_init <= lr_max, got {self.lr_min}, {self.lr_init}, {self.lr_max}")
        # Inner Adam moves every LoRA weight by about lr per step, so past 1 the adapter is noise
        # (an lr of 1e6 trains to the end at chance, with no error anywhere else). Plain SGD's step
        # is lr x gradient, and LoRA gradients are small, so it gets more room.
        limit = INNER_LR_LIMIT[self.optimizer]
        if self.lr_max > limit:
            raise ValueError(f"lr_max {self.lr_max:g} is far beyond a useful inner step size: with optimizer "
                             f"{self.optimizer!r} it must be <= {limit:g} (default 0.3679)")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        return self


# ---------------------------------------------------------------- stages

def valid_tasks() -> list[str]:
    """Every `family/subtask` a generator defines."""
    return [f"{fam}/{sub}" for fam, f in TasksConfig.model_fields.items() for sub in sorted(f.annotation.allowed_subtasks())]


def check_task(v: str) -> str:
    """A task name some family/subtask defines; otherwise the error lists every valid one."""
    if v not in valid_tasks():
        fam = v.partition("/")[0]
        ours = [t for t in valid_tasks() if t.startswith(fam + "/")]
        hint = f"{fam} defines {', '.join(ours)}; all " if ours else ""
        raise ValueError(f"unknown task {v!r}; {hint}valid tasks (family/subtask): {', '.join(valid_tasks())}")
    return v


class TrainLoopConfig(Section):
    """Outer-loop optimisation shared by meta-training and the baseline."""
    task: str = Field("needle/multikey", description="family/subtask trained on")
    steps: int = Field(600, ge=1)
    batch_size: int = Field(4, ge=1, description="examples per step")
    lr: float = Field(1e-3, gt=0, le=1.0)
    warmup: int = Field(50, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at this fraction of lr")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    eval_every: int = Field(100, ge=1)
    eval_examples: int = Field(64, ge=1)
    divergence_factor: float = Field(10.0, ge=0, description="stop with an error naming the step when the "
                                     "mean loss of the last 10 steps exceeds this multiple of its start, the mean of the first 10 steps' "
                                     "losses (0: off)")
    out_dir: str = "data/train"

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        return task_or_import(v)


def task_or_import(v: str) -> str:
    """A synthesized family/subtask (checked here, naming the valid ones), or an imported dataset's
    name such as ruler/niah_single_2 (Params checks it against imports.datasets)."""
    fam, _, sub = v.partition("/")
    if fam not in TasksConfig.model_fields and sub:
        return v
    return check_task(v)


class PretrainConfig(Section):
    """LM pretraining of the tiny base on haystack chunks before meta-training (0 steps: off)."""
    steps: int = Field(800, ge=0)
    lr: float = Field(3e-3, gt=0, le=1.0)
    lr_weight_net: float = Field(3e-3, ge=0, le=1.0, description="the weighting net learns (BCE) to pick "
                                 "the recorded supporting spans from the base's hidden states (0: off)")
    exposure: bool = Field(True, description="add LM text in meta_train.task's family format with random "
                           "pairings over the training keys and every answer word (see perk/meta/exposure.py)")
    exposure_keys: Literal["train", "all"] = Field("train", description="key words in the exposure text; "
                                                   "'all' includes held-out keys (random pairs, no answers)")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (a killed run resumes)")
    context_lm: float = Field(1.0, ge=0, description="weight of the LM loss on the training contexts' chunks "
                              "(0: the base never LM-trains on them, so a fixed haystack such as RULER's essay "
                              "is not memorised; the weighting net still learns the spans on them)")
    recall: bool = Field(True, description="add full-length in-context recall LM text: random (training "
                         "key, value) facts in haystack filler, then a question answered for each "
                         "(perk/meta/recall_text.py); gives the base the prompt retrieval the baseline needs")
    recall_batch: int = Field(4, ge=1, description="recall sequences per pretraining step at full length "
                              "(shorter ones: more, about the same tokens per step)")
    recall_length: int = Field(512, ge=16, description="haystack tokens of a recall sequence (facts included)")
    recall_min_length: int = Field(16, ge=16, description="haystack tokens at step 0 of the short-to-long ramp")
    recall_hold_steps: int = Field(200, ge=0, description="steps at recall_min_length before the ramp")
    recall_ramp_steps: int = Field(400, ge=0, description="steps over which the length then ramps up (0: no ramp)")
    recall_facts: int = Field(4, ge=1, description="facts (all asked) per recall sequence")
    recall_answer_weight: float = Field(1.0, ge=0, description="extra weight of the answered values' loss")
    out_dir: str = "data/pretrain"


class MetaTrainConfig(TrainLoopConfig):
    """PERK's outer loop. Learned step sizes and the weighting net have their own learning rates."""
    out_dir: str = "data/meta_train"
    steps: int = Field(700, ge=1)
    batch_size: int = Field(1, ge=1, description="contexts (episodes) per step; each asks all its questions")
    lr: float = Field(2e-3, gt=0, le=1.0)
    lr_step_sizes: float = Field(1e-2, gt=0, le=1.0)
    lr_weight_net: float = Field(3e-3, gt=0, le=1.0)
    aux_weight: float = Field(1.0, ge=0, description="weight of the weighting net's supporting-span BCE")
    aux_pos_weight: float = Field(10.0, gt=0, description="BCE weight of a supporting token (they are "
                                  "~2% of a haystack); also used when pretraining the net")
    exposure_weight: float = Field(1.0, ge=0, description="weight of the exposure LM loss during "
                                   "meta-training (keeps every value word producible; 0: off)")
    freeze_embeddings: bool = Field(True, description="tiny: keep the word embeddings pretraining gave "
                                    "(the answer loss alone would push words absent from training answers down)")
    support_span: Literal["answer", "sentence"] = Field(
        "answer", description="what the weighting net learns to mark, as the generator recorded it: the text "
        "the answer is read from (answer_spans) or the whole supporting facts (fact_spans)")
    max_questions: int = Field(0, ge=0, description="questions per episode, the context's first ones (0: all); "
                               "with synthesized siblings (ask_docs, ask_all) the first is the one-question row")
    spans_of: Literal["asked", "context"] = Field(
        "asked", description="whose supporting spans the weighting net learns: the asked questions' (max_questions "
        "cuts them too), or every question the generator recorded for the context (the position protocol asks "
        "only the gold document yet labels every document's name, so the net is not taught that the unasked "
        "names are filler: experiments/POSITION.md)")
    question_order: Literal["file", "nearest"] = Field(
        "file", description="which questions max_questions keeps: the context's first ones, or the gold "
        "document's and those of the documents nearest it (the position protocol's trained band)")
    shuffle_index: bool = Field(False, description="training only: each context's \"Document i:\" indices are a "
                                "random permutation of 1..n (fixed per context), so the index says nothing about "
                                "a document's place (experiments/POSITION.md P5); test and validation number 1..n")
    init_from: str | None = Field(
        None, description="start from an earlier meta-train's perk.safetensors (LoRA init, step sizes, weighting "
        "net and the trained base weights) instead of the pretrained base alone: the second stage of a "
        "curriculum (e.g. 4-fact stories, then 8). Same model and lora settings and the same pretrained base. "
        "Weights only: the optimizer starts afresh, and at a trained model's full lr that can diverge "
        "(experiments/POSITION.md P8 continued at a quarter of it).")


class BaselineConfig(TrainLoopConfig):
    """Prompt-based long-context fine-tuning (FT-ICR): context in the prompt -> answer."""
    out_dir: str = "data/baseline"
    steps: int = Field(700, ge=1, description="x batch 4: the question/answer pairs PERK sees (700 contexts x 4 keys)")
    lr: float = Field(1e-3, gt=0, le=1.0)
    max_questions: int = Field(0, ge=0, description="training/validation questions per context, its first "
                               "ones (0: all), as meta_train.max_questions")
    question_order: Literal["file", "nearest"] = Field("file", description="as meta_train.question_order")


class EvalConfig(Section):
    tasks: list[str] = Field(default_factory=lambda: ["needle/multikey"], description="family/subtask list")
    methods: list[Literal["perk", "baseline"]] = Field(default_factory=lambda: ["perk", "baseline"])
    controls: list[Literal["no_inner", "wrong_context"]] = Field(
        default_factory=lambda: ["no_inner", "wrong_context"], description="PERK controls on the test grid "
        "(perk/controls.py): answer with the LoRA init, or after encoding another example's context")
    per_cell: int = Field(10, ge=1, description="test examples per (length, depth) cell")
    max_new_tokens: int = Field(8, ge=1)
    micro_batch: int = Field(16, ge=1, description="chunks per micro-batch in the test-time encode")
    inner_steps: int | None = Field(None, ge=1, description="inner steps of the test-time encode (None: the "
                                    "meta-trained inner.steps; more: the extra steps repeat the last learned step size)")
    only_lengths: list[int] | None = Field(None, description="evaluate just these lengths (a shard for "
                                           "fan-out across workers; None: the whole grid)")
    out_dir: str = "data/eval"

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"list at least one task; valid tasks: {', '.join(valid_tasks())}")
        for t in v:
            task_or_import(t)
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one of perk, baseline")
        return v

    @field_validator("only_lengths")
    @classmethod
    def _only_lengths(cls, v: list[int] | None) -> list[int] | None:
        return _positive_list(v, 16, "token counts")


def _positive_list(v: list[int] | None, floor: int, what: str) -> list[int] | None:
    if v is not None and (not v or any(x < floor for x in v)):
        raise ValueError(f"must be a non-empty list of {what} >= {floor}, got {v}")
    return v


class ProfileConfig(Section):
    lengths: list[int] = Field(default_factory=lambda: [512, 1024, 2048, 4096, 8192])
    micro_batches: list[int] = Field(default_factory=lambda: [1, 4, 16])
    prompt: bool = Field(True, description="also profile prompt-based inference")
    warmup: int = Field(1, ge=0)
    repeats: int = Field(2, ge=1)
    new_tokens: int = Field(8, ge=1)
    timeout_s: float = Field(180.0, gt=0, description="per point; slower points are recorded as timeout")
    memory_limit_mb: int | None = Field(None, ge=64, description="per-point cap on added address space, MiB (forces OOM)")
    attn_implementation: Literal["eager", "sdpa"] = Field(
        "eager", description="attention kernels at inference (PERK's test-time encode is first-order, so "
        "fused 'sdpa' is allowed there; training always uses eager)")
    out_dir: str = "data/profile"

    # a zero or negative length used to be profiled as an empty context and the stage "succeeded"
    @field_validator("lengths")
    @classmethod
    def _lengths(cls, v: list[int]) -> list[int]:
        return _positive_list(v, 16, "token counts")

    @field_validator("micro_batches")
    @classmethod
    def _micro_batches(cls, v: list[int]) -> list[int]:
        return _positive_list(v, 1, "chunks per micro-batch")


class CapacityConfig(Section):
    """The adapter's recall as the facts per context grow at one length (needle multikey, every key
    asked, so one encode answers `facts` questions; keys held out of training)."""
    task: Literal["needle/multikey"] = "needle/multikey"
    length: int = Field(2048, ge=16, description="context tokens of every point")
    facts: list[int] = Field(default_factory=lambda: [4, 8, 16, 32, 64], description="needles per context "
                             "(<= 64; the 121 held-out keys of val + test are drawn from)")
    questions: int = Field(64, ge=1, description="at least this many questions per point (every key of "
                           "ceil(questions / facts) contexts, at least min_contexts)")
    min_contexts: int = Field(2, ge=1, description="so the largest point is not one context's luck")
    methods: list[Literal["perk", "baseline"]] = Field(default_factory=lambda: ["perk", "baseline"])
    # default off: an extra rank's meta-training was ~40% of the stage's CPU and the pipeline is
    # over its budget already; `-P capacity.ranks=[64]` (or dvc exp run -S) adds the arm
    ranks: list[int] = Field(default_factory=list, description="extra LoRA ranks: a PERK of each "
                             "is meta-trained here (the default meta-train model is lora.rank)")
    rank_steps: int | None = Field(None, ge=1, description="meta-training steps of each extra rank "
                                   "(None: meta_train.steps, the default rank's own schedule)")
    rank_alpha: Literal["matched", "same"] = Field(
        "matched", description="lora.alpha of an extra rank r: 'matched' scales it by sqrt(r / lora.rank), so the "
        "inner loop's first update (~ alpha / r * sqrt(r)) is as large as the default rank's; 'same' keeps lora.alpha")
    seed: int = Field(4321, ge=0, description="synthesis seed of the capacity contexts")
    out_dir: str = "data/capacity"

    @field_validator("facts")
    @classmethod
    def _facts(cls, v: list[int]) -> list[int]:
        if not v or any(f < 1 or f > 64 for f in v):
            raise ValueError(f"must be a non-empty list of facts per context in 1..64, got {v}")
        return v

    @field_validator("ranks")
    @classmethod
    def _ranks(cls, v: list[int]) -> list[int]:
        if any(r < 1 for r in v):
            raise ValueError(f"LoRA ranks must be >= 1, got {v}")
        return v


class MatrixCell(Section):
    """One cell of the task matrix (issue 13): its own pretrain -> meta-train -> baseline -> evaluate
    chain on one task, under {matrix_dir}/<name>/ (perk/matrix.py; dvc.yaml stages matrix-*@<name>)."""
    task: str = Field(description="family/subtask (or imported dataset) the cell trains and evaluates on")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted overrides for this cell only, "
                                "e.g. {meta_train.steps: 300, evaluate.tasks: [needle/single, needle/passkey]}")

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        return task_or_import(v)


CELL_NAME = r"^[a-z0-9][a-z0-9-]*$"  # a directory name and a DVC foreach key


class PositionProtocol(Section):
    """The position-bias protocol (issue #14, perk/position.py): the task-matrix cell trained with
    the gold document at each position; each cell's evaluate.tasks must list all four positions."""
    first: str = Field(description="matrix cell trained on <family>/first")
    middle: str = Field(description="matrix cell trained on <family>/middle")
    last: str = Field(description="matrix cell trained on <family>/last")
    random: str = Field(description="matrix cell trained on <family>/random")
    length: int | None = Field(None, ge=1, description="test length of the matrix (default: the family's first "
                               "train length)")


class Params(Section):
    seed: int = Field(0, ge=0)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    inner: InnerConfig = Field(default_factory=InnerConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    meta_train: MetaTrainConfig = Field(default_factory=MetaTrainConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    imports: ImportsConfig = Field(default_factory=ImportsConfig)
    matrix_dir: str = Field("data/matrix", description="where each cell of the task matrix writes its chain")
    matrix: dict[str, MatrixCell] = Field(default_factory=dict, description="the task matrix: name -> cell")
    cell: str | None = Field(None, description="set by `--cell NAME` (perk/matrix.py), not in params.yaml")
    position_dir: str = Field("data/position", description="where each position protocol writes its matrix")
    position: dict[str, PositionProtocol] = Field(default_factory=dict, description="position-bias protocols: "
                                                  "name -> the matrix cell trained at each gold position")
    position_protocol: str | None = Field(None, description="set by `perk position --protocol NAME`, not in "
                                          "params.yaml")

    @field_validator("matrix")
    @classmethod
    def _cell_names(cls, v: dict) -> dict:
        import re
        bad = [k for k in v if not re.match(CELL_NAME, k)]
        if bad:
            raise ValueError(f"cell names {bad} must be lower-case letters, digits and '-' (a directory and a "
                             f"DVC stage key), e.g. retrieval-random")
        return v

    @model_validator(mode="after")
    def _position_cells(self):
        import re
        for name, proto in self.position.items():
            if not re.match(CELL_NAME, name):
                raise ValueError(f"position protocol name {name!r} must be lower-case letters, digits and '-'")
            families = set()
            for pos in POSITIONS:
                cell = getattr(proto, pos)
                if cell not in self.matrix:
                    raise ValueError(f"position.{name}.{pos}: {cell!r} is not a cell of `matrix:` (cells: "
                                     f"{', '.join(self.matrix) or 'none'})")
                family, _, sub = self.matrix[cell].task.partition("/")
                if sub != pos:
                    raise ValueError(f"position.{name}.{pos}: cell {cell!r} trains on {self.matrix[cell].task!r}, "
                                     f"expected <family>/{pos}")
                families.add(family)
            if len(families) != 1:
                raise ValueError(f"position.{name}: the four cells train on different families {sorted(families)}")
        return self

    @model_validator(mode="after")
    def _imported_tasks(self):
        # tasks outside the synth families must name an imported dataset (TrainLoopConfig let them through)
        names = {d.name for d in self.imports.datasets}
        for key, tasks in (("meta_train.task", [self.meta_train.task]), ("baseline.task", [self.baseline.task]),
                           ("evaluate.tasks", self.evaluate.tasks)):
            for t in tasks:
                if t.partition("/")[0] not in TasksConfig.model_fields and t not in names:
                    raise ValueError(f"{key}: unknown task {t!r}: neither a synth task (valid: "
                                     f"{', '.join(valid_tasks())}) nor an imported dataset "
                                     f"(imports.datasets: {', '.join(sorted(names))})")
        return self


# ---------------------------------------------------------------- loading

def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'inner.steps=8' -> ('inner.steps', 8); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error":  # our validators' own text already says what was got
            msg = str(e.get("ctx", {}).get("error", msg))
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def validate_params(tree: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None,
                cell: str | None = None) -> Params:
    """params.yaml with `overrides` ("key.path=value"); `cell`: as that cell of the task matrix runs
    (perk/matrix.py: its task, its output directories, its own overrides)."""
    from .guarded import ArtifactError, read_text

    path = Path(path)
    if path.exists():
        try:
            text = read_text(path, "a parameters file")
        except ArtifactError as err:
            raise ConfigError(str(err)) from None
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    else:
        raise ConfigError(f"{path}: params file not found")
    for item in overrides or []:
        _set_dotted(tree, *parse_override(item))
    if cell is not None:
        from .matrix import apply_cell
        tree = apply_cell(tree, cell, validate_params(tree, str(path)), str(path))
        return validate_params(tree, f"{path} as cell {cell!r} (its task and matrix.{cell}.set applied)")
    return validate_params(tree, str(path))
