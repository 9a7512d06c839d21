"""``TeachConfig``: every option of ``ftcot teach`` (and of ``ftcot run``'s teach section), each checked as the config
is built (the budget, the parts of ``--num_shards``, the batch APIs' flags, base URLs), and what a run's folders and
cache are derived from it (:func:`shard_range`, :func:`cache_path`). An option of ``ftcot teach`` is a field here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task
from ftcot_hf.tasks.args import TaskDatasetArgs, resolve_tasks
from ftcot_hf.tasks.prompts import ANSWER_MAX_TOKENS
from ftcot_hf.teach.recipe import check_recipe
from ftcot_hf.teachers.cache import default_cache_path
from ftcot_hf.teachers.http.urls import BASE_URL_EXAMPLE, check_base_url, display_url
from ftcot_hf.utils.types import check_field_types


@dataclass
class TeachConfig(TaskDatasetArgs):
    """Configuration of ``ftcot teach``.

    Parameters that choose the data:
        tasks, split, limit, data_dir; or your own dataset: dataset, question_column, answer_column, answer_type,
        task_name, choices_column, dataset_config, train_split, test_split, test_size, split_seed, skip_bad_rows
    Parameters that choose the teacher:
        teacher, model, base_url, teacher_kwargs, max_concurrency, replay_file, cache_dir
    Parameters of Zero-shot-CoT and the filter:
        degree, temperature, trigger, keep, keep_truncated, mode, resample_until, max_extra_samples, annotations
    Parameters of the data recipe (docs/data-recipe.md):
        pass_rate_min, pass_rate_max (with keep="pass_rate"), max_rationale_student_tokens, student_tokenizer,
        dedup_jaccard
    Parameters of the output:
        output_dir (a folder that already holds a rationale dataset gains or replaces the taught tasks' configs),
        repo_id, lock_timeout
    """

    tasks: list[str] = field(default_factory=lambda: ["coin_flip"], metadata={"help": "Task names to teach."})
    teacher: str = field(
        default="text-davinci-002",
        metadata={
            "help": "A backend (replay, transformers, openai, vllm; openai_batch / anthropic_batch: the providers' "
            "batch APIs, docs/batch-apis.md) or a preset: 'text-davinci-002' replays the recorded Zero-shot-CoT "
            "completions of Kojima et al. (with their task-specific answer triggers)."
        },
    )
    model: str | None = field(
        default=None,
        metadata={"help": "transformers, vllm: Hub id or folder; openai: the served model name."},
    )
    base_url: list[str] | None = field(
        default=None, metadata={"help": "openai: one or more base URLs (a fleet of OpenAI-compatible servers)."}
    )
    teacher_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Backend options as JSON (as TRL's model_init_kwargs), e.g. '{\"supports_n\": false, "
            '"extra_body": {"repeat_penalty": 1.0}}\' for openai.'
        },
    )
    max_concurrency: int | None = field(
        default=None,
        metadata={
            "help": "openai: requests in flight at most (default 16), the ceiling of an adaptive bound: it starts at "
            "4, rises by one per window of replies as long as their speed holds, and halves on a timeout, 429 or "
            "5xx (congestion control, AIMD), so a one-slot local server and a GPU fleet both work without it."
        },
    )
    replay_file: str | None = field(
        default=None, metadata={"help": "replay: a JSONL recording (ftcot format) or reference completion-data JSON."}
    )
    degree: int = field(default=1, metadata={"help": "D, rationales sampled per question (1-64)."})
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (default 0.7 when D > 1, greedy when D = 1)."}
    )
    trigger: str | None = field(
        default=None,
        metadata={
            "help": "Stage-2 trigger style: 'generic' (the paper) or 'kojima' (default for the recorded teacher)."
        },
    )
    chat: bool = field(
        default=False,
        metadata={"help": "Use the chat API (openai: /chat/completions; transformers: the chat template)."},
    )
    protocol: str = field(
        default="auto",
        metadata={
            "help": "two_stage (the paper: rationale, then 'Therefore, the answer is' continued), one_stage (one "
            "request asking for reasoning and a final answer line) or auto (two_stage for completion endpoints, "
            "one_stage for chat). A reasoning reply (<think>...</think> or reasoning_content) is one request anyway."
        },
    )
    max_rationale_tokens: int | None = field(
        default=None,
        metadata={"help": "Token budget of a rationale (default: 128 two-stage, as the paper; 4096 one-stage)."},
    )
    max_answer_tokens: int = field(
        default=ANSWER_MAX_TOKENS,
        metadata={"help": "Token budget of a stage-2 answer (default 32, Kojima et al.'s, as the paper's teacher)."},
    )
    price_input_per_mtok: float | None = field(
        default=None, metadata={"help": "$ per million prompt tokens: the ledger then shows the cost."}
    )
    price_output_per_mtok: float | None = field(default=None, metadata={"help": "$ per million completion tokens."})
    max_requests: int | None = field(
        default=None,
        metadata={
            "help": "Stop sending after N teacher requests (one per prompt asked; cached replies and retries are "
            "free): what is done is saved, exit 3; the same command with a larger (or no) limit continues."
        },
    )
    max_cost: float | None = field(
        default=None,
        metadata={
            "help": "Stop sending once the teacher has billed this many $ (needs --price_input_per_mtok / "
            "--price_output_per_mtok; requests in flight finish, so it may end slightly above): as --max_requests."
        },
    )
    batch_discount: float = field(
        default=0.5,
        metadata={
            "help": "openai_batch / anthropic_batch: the batch price as a fraction of the prices given (0.5: half, "
            "as OpenAI and Anthropic bill batches); the ledger's cost and --max_cost use it."
        },
    )
    no_wait: bool = field(
        default=False,
        metadata={
            "help": "openai_batch / anthropic_batch: submit the batches, print how to collect them and exit 0 (the "
            "same command later collects them, submitting nothing twice). As --teacher_kwargs '{\"wait\": false}'."
        },
    )
    keep: str = field(
        default="correct",
        metadata={
            "help": "'correct' (the paper's filter), 'all', or 'pass_rate': the correct rows of the questions whose "
            "pass rate over their D samples lies in [--pass_rate_min, --pass_rate_max] (open-r1's band)."
        },
    )
    pass_rate_min: float | None = field(
        default=None,
        metadata={"help": "--keep pass_rate: keep questions with at least this fraction of correct samples (0-1)."},
    )
    pass_rate_max: float | None = field(
        default=None,
        metadata={"help": "--keep pass_rate: keep questions with at most this fraction of correct samples (0-1)."},
    )
    max_rationale_student_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Leave out rationales longer than this many tokens of the student's tokenizer (the rationale "
            "alone, no special tokens): what the student would see truncated. Needs --student_tokenizer (in "
            "`ftcot run`: default the run's --student)."
        },
    )
    student_tokenizer: str | None = field(
        default=None,
        metadata={"help": "The student whose tokenizer --max_rationale_student_tokens counts in (Hub id, folder)."},
    )
    dedup_jaccard: float | None = field(
        default=None,
        metadata={
            "help": "Remove a rationale whose word 3-shingles (lower case, punctuation ignored) have a Jaccard "
            "similarity >= this with a kept rationale of the same question (1: same shingles; 0.8: near-copies). "
            "Default: off (duplicates kept, as the paper)."
        },
    )
    keep_truncated: bool | None = field(
        default=None,
        metadata={
            "help": "Let --keep correct keep a sample whose rationale or answer was cut by the token limit "
            "(finish_reason 'length'). Default: false (left out, and counted in the yield report); true for the "
            "recorded text-davinci-002 teacher, whose 'length' marks are guessed from the text and whose paper "
            "filter kept them."
        },
    )
    retry_unusable: bool = field(
        default=True,
        metadata={
            "help": "Ask again, instead of serving from the request cache, a cached reply with nothing in it (empty, "
            "null, a reasoning trace with no answer: what a failing server sends); the yield report counts them. "
            "false replays them as they were (a deliberate greedy replay)."
        },
    )
    mode: str = field(default="paper", metadata={"help": "Answer parsing for the filter: 'paper' or 'robust'."})
    resample_until: int | None = field(
        default=None, metadata={"help": "Sample more for questions with fewer than this many correct rationales."}
    )
    max_extra_samples: int = field(default=0, metadata={"help": "Budget of extra samples for resample_until."})
    annotations: bool = field(
        default=False, metadata={"help": "Also ask for 'fundamentals' and 'common_errors' (Teacher-LM style)."}
    )
    split: str = field(default="train", metadata={"help": "Which split to teach (the paper teaches train)."})
    limit: int | None = field(default=None, metadata={"help": "Teach only the first N questions (quick runs)."})
    data_dir: str | None = field(default=None, metadata={"help": "Offline mirror (default: $FTCOT_DATA_MIRROR)."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Teacher request cache file (default: $HF_HOME/ftcot/teacher_cache.sqlite)."},
    )
    output_dir: str = field(default="outputs/rationales", metadata={"help": "Where the dataset repo is written."})
    num_shards: int = field(
        default=1,
        metadata={
            "help": "Split the questions into N contiguous parts (one per machine or job array task); this run "
            "teaches part --shard_index into its own --output_dir (and, without --cache_dir, its own cache "
            "$HF_HOME/ftcot/teacher_cache.shard-I-of-N.sqlite). `ftcot merge` then builds the dataset one run "
            "would have (docs/sharding.md)."
        },
    )
    shard_index: int = field(default=0, metadata={"help": "Which part of --num_shards this run teaches (0 to N-1)."})
    repo_id: str = field(default="<user>/ftcot-rationales", metadata={"help": "Repo id shown in the card."})
    lock_timeout: float = field(
        default=600.0,
        metadata={"help": "Seconds to wait while another `ftcot teach` writes the same output_dir, then give up."},
    )

    FLAG_ALIASES: ClassVar[dict[str, str]] = {"teacher_model": "model", "limit_train": "limit", "task": "tasks"}
    """`ftcot run`'s names of these fields, accepted here too (one set of flag names across the commands)."""
    LEAD: ClassVar[tuple[str, ...]] = ("tasks", "dataset", "teacher", "model", "base_url", "output_dir")
    """What `ftcot teach` acts on: the first group of its --help."""

    NOT_FINGERPRINTED: ClassVar[frozenset[str]] = frozenset(
        {"max_concurrency", "data_dir", "cache_dir", "output_dir", "repo_id", "base_url", "lock_timeout",
         "max_requests", "max_cost", "batch_discount", "no_wait"}
    )  # fmt: skip
    """Fields that do not change what the teach stage produces (``ftcot run`` leaves them out of its fingerprint).
    ``base_url`` among them: the served model is named by ``model``, and the request cache (keyed on the model and
    the prompt, not the server) already serves a fleet or a restarted server the same samples. The budget neither:
    a run it stops does not finish (teach raises), and raising it must not throw away a finished stage."""

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        check_field_types(self)  # a YAML `tasks: 5` or TeachConfig(degree="4") fails here, named
        self.teacher_kwargs = parse_kwargs(self.teacher_kwargs, "teacher_kwargs")
        self.validate()

    def validate(self) -> None:
        """Refuse values that would teach something other than asked (``--limit 0`` used to teach everything)."""
        if self.limit is not None and self.limit < 1:
            raise FtcotError(
                f"--limit must be a positive number of questions (got {self.limit}); leave it out to teach every "
                "question (in `ftcot run`: --limit_train)."
            )
        if not 1 <= self.degree <= 64:
            raise FtcotError(f"--degree (D) must be between 1 and 64, got {self.degree} (samples per question).")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise FtcotError(
                f"--temperature must be a number >= 0 (0 = greedy), got {self.temperature}; leave it out for the "
                "default (0.7 when D > 1, greedy when D = 1)."
            )
        if self.degree > 1 and self.temperature == 0:
            raise FtcotError(
                f"--degree {self.degree} with --temperature 0 would repeat one greedy rationale {self.degree} times: "
                "set a temperature > 0 (or leave it out for 0.7)."
            )
        if self.max_rationale_tokens is not None and self.max_rationale_tokens < 1:
            raise FtcotError(
                f"--max_rationale_tokens must be >= 1 (tokens a rationale may use), got {self.max_rationale_tokens}; "
                "leave it out for the default (128 two-stage, 4096 one-stage)."
            )
        if self.max_answer_tokens < 1:
            raise FtcotError(
                f"--max_answer_tokens must be >= 1 (tokens a stage-2 answer may use), got {self.max_answer_tokens}."
            )
        if self.resample_until is not None and self.resample_until < 0:
            raise FtcotError(
                f"--resample_until must be a number of correct rationales >= 1 per question, got "
                f"{self.resample_until}; leave it out to sample each question --degree times only."
            )
        if self.max_extra_samples < 0:
            raise FtcotError(
                f"--max_extra_samples must be >= 0 (extra samples in all for --resample_until), got "
                f"{self.max_extra_samples}."
            )
        if self.resample_until and not self.max_extra_samples:
            raise FtcotError(
                f"--resample_until {self.resample_until} samples more only within --max_extra_samples, which is 0: "
                "give --max_extra_samples N (the extra samples it may ask for in all)."
            )
        check_recipe(keep=self.keep, degree=self.degree, pass_rate_min=self.pass_rate_min,
                     pass_rate_max=self.pass_rate_max, max_rationale_student_tokens=self.max_rationale_student_tokens,
                     student_tokenizer=self.student_tokenizer, dedup_jaccard=self.dedup_jaccard)  # fmt: skip
        if not (math.isfinite(self.lock_timeout) and self.lock_timeout >= 0):
            raise FtcotError(f"--lock_timeout must be >= 0 seconds, got {self.lock_timeout}.")
        self._validate_shards()
        self._validate_budget()
        self._validate_base_url()

    def _validate_shards(self) -> None:
        if isinstance(self.num_shards, bool) or self.num_shards < 1:
            raise FtcotError(f"--num_shards must be a number of parts >= 1, got {self.num_shards}.")
        if isinstance(self.shard_index, bool) or not 0 <= self.shard_index < self.num_shards:
            raise FtcotError(
                f"--shard_index must be between 0 and --num_shards - 1 = {self.num_shards - 1}, got "
                f"{self.shard_index} (Slurm's $SLURM_ARRAY_TASK_ID with --array=0-{self.num_shards - 1}, Kubernetes' "
                "$JOB_COMPLETION_INDEX)."
            )
        if self.num_shards > 1 and self.resample_until:
            # its --max_extra_samples is one budget spent in question order: a part cannot know what the parts
            # before it spent, so the merged dataset would not be the one run's
            raise FtcotError(
                "--resample_until spends --max_extra_samples over all questions in order, which --num_shards "
                "cannot split so that the merged dataset equals one run's: teach without --num_shards, or without "
                "--resample_until (a larger --degree samples every question more)."
            )

    def _validate_budget(self) -> None:
        if not (math.isfinite(self.batch_discount) and 0 < self.batch_discount <= 1):
            raise FtcotError(f"--batch_discount must be a fraction of the prices given, > 0 and <= 1 (0.5: half), got "
                             f"{self.batch_discount}.")  # fmt: skip
        for name in ("price_input_per_mtok", "price_output_per_mtok"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise FtcotError(f"--{name} must be a price >= 0 ($ per million tokens), got {value}.")
        if self.max_requests is not None and (isinstance(self.max_requests, bool) or self.max_requests < 1):
            raise FtcotError(
                f"--max_requests must be a number of requests >= 1, got {self.max_requests}; leave it out for no "
                "limit."
            )
        if self.max_cost is not None:
            if not (math.isfinite(self.max_cost) and self.max_cost > 0):
                raise FtcotError(
                    f"--max_cost must be an amount of $ > 0, got {self.max_cost}; leave it out for no limit."
                )
            if not (self.price_input_per_mtok or self.price_output_per_mtok):
                raise FtcotError(
                    f"--max_cost {self.max_cost:g} needs the teacher's prices to know what a request costs: give "
                    "--price_input_per_mtok and --price_output_per_mtok ($ per million prompt / completion tokens)."
                )

    def _validate_base_url(self) -> None:
        """A base URL that cannot be a server's API root fails here, before any request (it used to be retried for
        half a minute). The value is named without its credentials or query values."""
        for value in self.base_url or []:
            for url in str(value).replace(",", " ").split() or [str(value)]:
                problem = check_base_url(url.rstrip("/"))
                if problem is not None:
                    shown = display_url(str(value)) if "://" in str(value) else str(value).rpartition("@")[2]
                    raise FtcotError(
                        f"--base_url {shown!r} is not a server's API root: {problem}; give one like "
                        f"{BASE_URL_EXAMPLE}."
                    )

    def resolve_tasks(self) -> list[Task]:
        """The tasks to teach: the one ``--dataset`` defines, else the registered tasks named by ``--tasks``."""
        # --limit before anything touches the rows: a quick run over a 1M-row file reads its first N rows
        return resolve_tasks(self.tasks, self, limits={self.split: self.limit} if self.limit is not None else None)


def parse_kwargs(value: dict | str | None, name: str) -> dict[str, Any]:
    """A JSON object given on the command line (or a dict from YAML/Python) -> dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):  # a YAML list or number
        raise FtcotError(f"--{name} must be a mapping of options (YAML) or a JSON object ({{...}}), not {value!r}.")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise FtcotError(f"--{name} is not valid JSON ({e.msg} at character {e.pos}): {value!r}.") from None
    if not isinstance(parsed, dict):
        raise FtcotError(f"--{name} must be a JSON object ({{...}}), not {value!r}.")
    return parsed


def shard_range(questions: int, config: TeachConfig, task: str = "the task") -> tuple[int, int]:
    """The questions ``[start, end)`` of part ``config.shard_index`` of ``config.num_shards``: contiguous parts, the
    first ``questions % num_shards`` one question longer (``datasets.Dataset.shard(contiguous=True)``'s rule).
    Contiguous, not every N-th question: the merged dataset is then the parts one after the other, so ``ftcot
    merge`` streams them in order, with no key to sort on, into the rows and order of one run."""
    div, mod = divmod(questions, config.num_shards)
    start = div * config.shard_index + min(config.shard_index, mod)
    end = start + div + (1 if config.shard_index < mod else 0)
    if start == end:
        raise FtcotError(
            f"--num_shards {config.num_shards} is more parts than {task}'s {questions} question(s) to teach: part "
            f"{config.shard_index} would be empty; use --num_shards {max(questions, 1)} or fewer."
        )
    return start, end


def cache_path(config: TeachConfig) -> str | Path | None:
    """The request cache of a run: ``--cache_dir``; without it the default one, or for a part of ``--num_shards``
    its own file beside it (``teacher_cache.shard-00002-of-00008.sqlite``), so that parts on machines sharing a home
    folder never write one SQLite file over a network file system. ``ftcot merge --cache`` merges them."""
    if config.cache_dir is not None or config.num_shards == 1:
        return config.cache_dir
    return shard_cache_file(default_cache_path(), config.shard_index, config.num_shards)


def shard_cache_file(path: Path, index: int, num_shards: int) -> Path:
    return path.with_name(f"{path.stem}.shard-{index:05d}-of-{num_shards:05d}{path.suffix}")
