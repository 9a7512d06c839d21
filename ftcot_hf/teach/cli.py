"""``ftcot teach``: teach one or more tasks with a teacher and save the rationale dataset (Parquet + card).

Why this file is ~750 lines: it is ``TeachConfig`` (every option of the command, with its checks: the budget, the
shards, the batch APIs' flags) and :func:`teach`, the one function that runs a teaching job from it (the budget, the
parts of ``--num_shards``, the rows staged while teaching, the failure message that names the likely cause), kept in
one file so that an option of ``ftcot teach`` is a field here and its use beside it, as ``EvalConfig`` and
``PushConfig`` are. What a job calls lives beside it in ``teach/`` (augment, recipe, yields, folder, card).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task
from ftcot_hf.tasks.args import TaskDatasetArgs, resolve_tasks
from ftcot_hf.tasks.prompts import ANSWER_MAX_TOKENS, RATIONALE_MAX_TOKENS
from ftcot_hf.teach.augment import REASONING_MAX_TOKENS, RationaleAugmenter, augment
from ftcot_hf.teach.decontamination import MAX_RATIONALES_CHECKED, decontamination_report
from ftcot_hf.teach.folder import check_output_dir, save_rationales
from ftcot_hf.teach.recipe import RowFilter, check_recipe, load_tokenizer, token_counter
from ftcot_hf.teach.yields import YieldReport, decontamination_summary
from ftcot_hf.teachers import build_teacher, check_recorded_tasks, teacher_spec
from ftcot_hf.teachers.base import RequestBudget
from ftcot_hf.teachers.batch.core import BatchesPending
from ftcot_hf.teachers.cache import CachedTeacher, default_cache_path
from ftcot_hf.teachers.http.adaptive import describe_rate, describe_seconds
from ftcot_hf.teachers.http.urls import BASE_URL_EXAMPLE, check_base_url, display_url
from ftcot_hf.utils.console import quiet_libraries
from ftcot_hf.utils.fs import final_dest, partial_sibling, remove_stale_tmp
from ftcot_hf.utils.parser import command_parser
from ftcot_hf.utils.scrub import scrub_text
from ftcot_hf.utils.shards import SAMPLE_ATTRIBUTE, discard_staged
from ftcot_hf.utils.types import check_field_types

logger = logging.getLogger(__name__)

EXIT_INCOMPLETE = 3
"""`ftcot teach`'s exit status when some teacher requests failed for good (bad input is 2)."""


class TeachIncompleteError(FtcotError):
    """Some teacher requests failed for good (their retries spent), or were not sent because the budget
    (``--max_requests`` / ``--max_cost``) was spent (``stopped`` says which): the other samples were taught (and
    cached), these have no rows. Re-running the same command (with a larger budget) sends only what is missing."""

    def __init__(
        self, failed: int, last_error: str | None, results: dict[str, Any] | None = None,
        reports: list[YieldReport] | None = None, *, stopped: str | None = None, unsent: int = 0,
        cause: str | None = None,
    ):  # fmt: skip
        self.failed, self.last_error = failed, last_error
        self.stopped, self.unsent = stopped, unsent
        self.results: dict[str, Any] = results or {}
        """What was taught, as :func:`teach` returns it (the kept rows of the samples that came back)."""
        self.reports: list[YieldReport] = reports or []
        super().__init__(incomplete_message(failed, last_error, stopped=stopped, unsent=unsent, cause=cause))


def incomplete_message(
    failed: int, last_error: str | None, *, stopped: str | None = None, unsent: int = 0, cause: str | None = None
) -> str:
    """The one line said when ``failed`` requests failed for good (``last_error`` carries no key: the teacher
    scrubs its messages) and/or the budget stopped teaching (``stopped``: why) with ``unsent`` requests not sent.
    ``cause`` (:func:`likely_cause`): what made them fail and the flags that fix it, said instead of "re-run the
    same command" when that command would fail the same way."""
    parts = []
    if stopped:
        flag = "--max_cost" if stopped.startswith("max_cost") else "--max_requests"
        parts.append(f"the budget is spent, --{stopped}; {unsent} teacher request(s) not sent. To continue, "
                     f"re-run the same command with a larger {flag} (or without it): the requests already answered "
                     "are cached and not sent again.")  # fmt: skip
    if failed or not stopped:
        last = " ".join((last_error or "unknown").split())
        then = cause or ("Re-run the same command: only the failed requests are sent again (the others are "
                         "cached).")  # fmt: skip
        parts.append(f"{failed} teacher request(s) failed (retries spent); last error: {last.rstrip('.')}. {then}")
    return " ".join(parts)


def likely_cause(
    config: TeachConfig, reports: Sequence[YieldReport], last_error: str | None, live: dict[str, Any]
) -> str | None:
    """What made teacher requests fail, and the flags that fix it, when re-running the same command would fail the
    same way (timeouts: the replies are slower than the timeout allows; 429: too many requests; nothing at the
    address); None when a re-run may well succeed (a 5xx storm, a flaky proxy). ``live``: the teacher's state."""
    error = (last_error or "").lower()
    explicit = (config.teacher_kwargs or {}).get("timeout")  # type: ignore[union-attr]
    if "timed out" in error:
        one_stage = any(r.protocol == "one_stage" for r in reports)
        tokens = config.max_rationale_tokens or (REASONING_MAX_TOKENS if one_stage else RATIONALE_MAX_TOKENS)
        rate = live.get("tokens_per_s")
        timeouts = sum(r.timeouts for r in reports)
        speed = ""
        if rate:
            expected = describe_seconds(tokens / rate)
            speed = f"; the server produces {describe_rate(rate)}, so a {tokens}-token reply takes {expected}"
        fix = f"lower --max_rationale_tokens (now {tokens}) or --max_concurrency (1 for a one-slot server)"
        if explicit:
            need = f"{math.ceil(3 * tokens / rate)}" if rate else "..."
            fix += (f", or raise the timeout of {explicit:g} s (--teacher_kwargs '{{\"timeout\": {need}}}') or leave "
                    "it out (then it follows the tokens asked and the server's speed)")  # fmt: skip
        else:
            fix += ", or raise the floor of the derived timeout (--teacher_kwargs '{\"min_timeout\": ...}')"
        return (f"Likely cause: replies slower than the timeout ({timeouts} timeout(s){speed}); the same command "
                f"would time out the same way: {fix}. The requests already answered are cached.")  # fmt: skip
    if "http 429" in error:
        return ("Likely cause: the server refuses the load (HTTP 429, rate limited): lower --max_concurrency, or wait "
                "and re-run (the requests already answered are cached).")  # fmt: skip
    if "cannot connect" in error:
        return ("Likely cause: nothing answers at --base_url: start the server (or fix --base_url), then re-run the "
                "same command: only the failed requests are sent again.")  # fmt: skip
    return None


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



def _decontamination(task: Task, taught: Any, test: Any, kept: Any) -> dict[str, Any]:
    """The taught questions (not the whole split: ``--limit`` bounds this too) against the test split, and a
    sample of the kept rationales."""
    sample = getattr(kept, SAMPLE_ATTRIBUTE, None)  # taken as the rows went by: nothing is read back
    report = decontamination_report(task, dataset={"train": taught, "test": test},
                                    rationales=sample if sample is not None else kept,
                                    rationales_total=kept.num_rows if sample is not None else None,
                                    max_rationales=MAX_RATIONALES_CHECKED)  # fmt: skip
    return decontamination_summary(report)


def teach(
    config: TeachConfig,
    *,
    tasks: Sequence[Task] | None = None,
    progress: bool = False,
    teacher: tuple[Any, str] | None = None,
    part: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], list[YieldReport]]:
    """Teach every task of ``config`` (or ``tasks``, already resolved); returns {task name: DatasetDict(train=
    rationales, test=task test)} and the yield reports.

    ``teacher``: a teacher already built (and its trigger, as :func:`~ftcot_hf.teachers.build_teacher` returns
    them), left open for the caller's next call (a Ray actor's, :mod:`ftcot_hf.teach.ray_data`). ``part``: teach the
    questions ``[start, end)`` of the split only (a Ray batch), recorded as ``--num_shards`` parts are.

    A teacher request that fails for good (its retries spent) does not stop the run: the others are taught (and
    cached), its samples have no rows and are counted (``YieldReport.failed_requests``); once every task is done,
    :class:`TeachIncompleteError` is raised carrying the results and reports of what succeeded (``ftcot teach``
    saves them and exits 3). A re-run sends only the failed requests. A task none of whose samples came back is left
    out of the results (an empty rationale set is no dataset)."""
    tasks = list(tasks) if tasks is not None else config.resolve_tasks()
    _check_no_wait(config)
    remove_stale_tmp(final_dest(config.output_dir))  # the rows of killed runs (their .partial-<pid>-* folders)
    with quiet_libraries():  # no datasets bars ("Generating train split", "Map"): the augmenter shows its own
        records_of = {
            task.name: task.load(data_dir=config.data_dir) for task in tasks
        }  # bad data fails before the teacher
    for task in tasks:  # a part with no question is refused before the teacher is loaded
        split = records_of[task.name].get(config.split)
        if split is not None:
            shard_range(_taught(config, split).num_rows, config, task.name)
    given = teacher
    teacher, trigger = given if given is not None else build_teacher(config, tasks)
    if config.no_wait:
        teacher.wait = False  # type: ignore[attr-defined]
    budget = _budget(config, teacher)
    keep_truncated = config.keep_truncated
    if keep_truncated is None:
        keep_truncated = teacher_spec(config.teacher).keep_truncated
    cached = CachedTeacher(teacher, cache_path(config), retry_unusable=config.retry_unusable)
    cached.keep_going = True  # a request that fails for good is counted; the run goes on

    def counters() -> dict[str, int]:  # the ledger: the backend's counts and the cache's
        backend = teacher.counters()  # an HTTP backend counts the HTTP requests it sent (retries, one per sample)
        return {**backend, "requests": backend.get("requests", cached.calls), "cache_hits": cached.cache_hits}

    count_tokens = None
    if config.max_rationale_student_tokens is not None:  # loaded once, before the teacher is asked anything
        count_tokens = token_counter(load_tokenizer(str(config.student_tokenizer)))
    results, reports, last_error = {}, [], None
    staging = partial_sibling(config.output_dir)  # this call's rows as they are taught, until they are saved
    atexit.register(shutil.rmtree, staging, True)  # what is not saved by then is in the request cache anyway
    try:
        for task in tasks:
            records = records_of[task.name]
            if config.split not in records:
                raise FtcotError(f"{task.name} has no {config.split!r} split here (available: {', '.join(records)}).")
            data = _taught(config, records[config.split])
            shard = None
            if config.num_shards > 1:
                start, end = shard_range(data.num_rows, config, task.name)
                shard = {"index": config.shard_index, "num_shards": config.num_shards, "start": start, "end": end,
                         "questions": data.num_rows}  # fmt: skip
                data = data.select(range(start, end))
            elif part is not None:
                start, end = max(0, part[0]), min(part[1], data.num_rows)
                shard = {"index": None, "num_shards": None, "start": start, "end": end, "questions": data.num_rows}
                data = data.select(range(start, end))
            augmenter = RationaleAugmenter(
                cached,
                task,
                degree=config.degree,
                temperature=config.temperature,
                trigger=trigger,
                mode=config.mode,
                resample_until=config.resample_until,
                max_extra_samples=config.max_extra_samples,
                annotations=config.annotations,
                progress=progress,
                keep_truncated=keep_truncated,
                chat=config.chat,
                protocol=config.protocol,
                max_rationale_tokens=config.max_rationale_tokens,
                max_answer_tokens=config.max_answer_tokens,
                counters=counters,
            )
            sent, hits, reasked = counters()["requests"], cached.cache_hits, cached.reasked
            prices = None
            if config.price_input_per_mtok is not None or config.price_output_per_mtok is not None:
                factor = _price_factor(config, teacher)
                price_in, price_out = config.price_input_per_mtok, config.price_output_per_mtok
                prices = (factor * (price_in or 0.0), factor * (price_out or 0.0))
            with quiet_libraries():
                row_filter = RowFilter(
                    config.keep, keep_truncated, config.degree,
                    pass_rate_min=config.pass_rate_min or 0.0,
                    pass_rate_max=1.0 if config.pass_rate_max is None else config.pass_rate_max,
                    max_student_tokens=config.max_rationale_student_tokens, count_tokens=count_tokens,
                    dedup_jaccard=config.dedup_jaccard,
                )  # fmt: skip
                kept, report = augment(data, augmenter, row_filter=row_filter,
                                       output_dir=staging / task.name, prices=prices)  # fmt: skip
            report.requests = counters()["requests"] - sent
            report.cache_hits = cached.cache_hits - hits
            report.reasked_unusable = cached.reasked - reasked
            report.skipped_rows = sum(getattr(task.source, "skipped", {}).values())
            report.cost = _cost(config, report, _price_factor(config, teacher))
            report.shard = shard
            if report.unsent_requests and budget is not None:
                report.stopped = budget.reason
            last_error = augmenter.last_error or last_error
            reports.append(report)
            if (report.failed_requests or report.unsent_requests) and not kept.num_rows:
                logger.warning("%s: no sample came back (%d requests failed, %d not sent): nothing to save",
                               task.name, report.failed_requests, report.unsent_requests)  # fmt: skip
                continue
            from datasets import DatasetDict

            results[task.name] = DatasetDict(
                {"train": kept, **({"test": records["test"]} if "test" in records else {})}
            )
            if "test" in records and config.split != "test":
                report.decontamination = _decontamination(task, data, records["test"], kept)
            logger.info("%s: %d calls, %d cache hits so far", task.name, cached.calls, cached.cache_hits)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing of it will be saved: every reply is in the cache
        raise
    finally:
        cached.cache.close() if given is not None else cached.close()
    for name in {t.name for t in tasks} - set(results):  # a task left out of the results: its rows go nowhere
        shutil.rmtree(staging / name, ignore_errors=True)
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()
    failed, unsent = sum(r.failed_requests for r in reports), sum(r.unsent_requests for r in reports)
    if failed or unsent:
        stopped = budget.reason if unsent and budget is not None else None
        cause = likely_cause(config, reports, last_error, teacher.live()) if failed else None
        raise TeachIncompleteError(failed, last_error, results, reports, stopped=stopped, unsent=unsent, cause=cause)
    return results, reports


def _taught(config: TeachConfig, split: Any) -> Any:
    """The questions of ``split`` a run teaches (all of its parts together): the first ``--limit``."""
    return split.select(range(min(config.limit, split.num_rows))) if config.limit is not None else split


def remove_partial(results: dict[str, Any]) -> None:
    """Delete the rows staged while teaching ``results`` (their ``.<output_dir>.partial-*`` folder): once saved, or
    given up (they are in the request cache either way)."""
    discard_staged(split for dataset_dict in results.values() for split in dataset_dict.values())


def _budget(config: TeachConfig, teacher: Any) -> RequestBudget | None:
    """The teacher's budget (``--max_requests`` / ``--max_cost``), set on the backend: the request cache sits
    above it, so cached replies never reach it and cost nothing against it."""
    if config.max_requests is None and config.max_cost is None:
        return None
    if not teacher.supports_budget:
        raise FtcotError(
            f"--max_requests / --max_cost limit what a teacher sends to a server; the {teacher.backend} teacher "
            "(a local or recorded one) sends no billed requests: leave them out, or use --limit to teach fewer "
            "questions."
        )
    factor = _price_factor(config, teacher)
    teacher.budget = RequestBudget(
        max_requests=config.max_requests, max_cost=config.max_cost,
        price_input_per_mtok=(config.price_input_per_mtok or 0.0) * factor,
        price_output_per_mtok=(config.price_output_per_mtok or 0.0) * factor,
    )  # fmt: skip
    return teacher.budget


def _price_factor(config: TeachConfig, teacher: Any) -> float:
    """What the given prices are multiplied by: ``--batch_discount`` for a batch API's teacher, else 1."""
    return config.batch_discount if getattr(teacher, "batch_pricing", False) else 1.0


def _check_no_wait(config: TeachConfig) -> None:
    """``--no_wait`` with a teacher that does not submit batches: one line, before any data is read."""
    if not config.no_wait:
        return
    spec = teacher_spec(config.teacher)
    backend = spec.backend
    if not getattr(spec.cls, "batch_pricing", False):
        raise FtcotError(f"--no_wait submits batches without waiting for them; the {backend} teacher answers as "
                         "it is asked: leave --no_wait out, or use --teacher openai_batch / anthropic_batch.")


def _cost(config: TeachConfig, report: YieldReport, factor: float = 1.0) -> float | None:
    """$ of a task's requests when prices are given: the tokens billed in this run (cache hits are free), or, for a
    backend that reports no billing, its samples' tokens; ``factor``: the batch discount."""
    if config.price_input_per_mtok is None and config.price_output_per_mtok is None:
        return None
    prompt = report.billed_prompt_tokens if report.billed_prompt_tokens is not None else report.prompt_tokens
    completion = (
        report.billed_completion_tokens if report.billed_completion_tokens is not None else report.completion_tokens
    )
    price_in, price_out = config.price_input_per_mtok or 0.0, config.price_output_per_mtok or 0.0
    return factor * (prompt * price_in + completion * price_out) / 1e6


def cli_main(argv: list[str]) -> int:
    """`ftcot teach`: flags and `--config teach.yaml` come from TeachConfig through TrlParser."""
    parser = command_parser((TeachConfig,), argv, prog="ftcot teach", lead=TeachConfig.LEAD)
    (config,) = parser.parse(argv)
    tasks = config.resolve_tasks()
    check_recorded_tasks(config, tasks)  # before the data is read
    check_output_dir(config)  # before the teacher is asked anything
    incomplete: TeachIncompleteError | None = None
    try:
        results, reports = teach(config, tasks=tasks, progress=True)
    except BatchesPending as e:  # --no_wait: submitted, not failed; the same command collects
        print(f"ftcot: {scrub_text(str(e))}")
        return 0
    except TeachIncompleteError as e:  # save what succeeded (it is cached too), then say what did not
        incomplete, results, reports = e, e.results, e.reports
    try:
        out = save_rationales(config, results, reports, tasks) if results else None
    finally:
        remove_partial(results)  # saved, or given up: the replies are cached
    print(YieldReport.markdown(reports))
    for line in filter(None, (r.truncation_summary() for r in reports)):
        print(line)
    for r in reports:
        print(r.ledger_summary())
    if out is not None:
        done = "Saved what was taught" if incomplete is not None else "Saved"
        print(f"\n{done} to {out}; load with: load_dataset({str(out)!r}, {next(iter(results))!r})")
    if incomplete is not None:
        kind = "error" if incomplete.failed else "stopped"
        print(f"ftcot: {kind}: {scrub_text(str(incomplete))}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
