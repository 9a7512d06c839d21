"""``ftcot teach``: teach one or more tasks with a teacher and save the rationale dataset (Parquet + card).

:func:`teach` runs a teaching job from a :class:`~ftcot_hf.teach.config.TeachConfig` (the budget, the parts of
``--num_shards``, the rows staged while teaching, the failure message that names the likely cause); :func:`cli_main`
is the command around it.
"""

from __future__ import annotations

import atexit
import logging
import math
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task
from ftcot_hf.tasks.prompts import RATIONALE_MAX_TOKENS
from ftcot_hf.teach.augment import REASONING_MAX_TOKENS, RationaleAugmenter, augment
from ftcot_hf.teach.config import TeachConfig, cache_path, shard_range
from ftcot_hf.teach.decontamination import MAX_RATIONALES_CHECKED, decontamination_report
from ftcot_hf.teach.folder import check_output_dir, save_rationales
from ftcot_hf.teach.recipe import RowFilter, load_tokenizer, token_counter
from ftcot_hf.teach.yields import YieldReport, decontamination_summary
from ftcot_hf.teachers import build_teacher, check_recorded_tasks, teacher_spec
from ftcot_hf.teachers.base import RequestBudget
from ftcot_hf.teachers.batch.core import BatchesPending
from ftcot_hf.teachers.cache import CachedTeacher
from ftcot_hf.teachers.http.adaptive import describe_rate, describe_seconds
from ftcot_hf.utils.console import quiet_libraries
from ftcot_hf.utils.fs import final_dest, partial_sibling, remove_stale_tmp
from ftcot_hf.utils.parser import command_parser
from ftcot_hf.utils.scrub import scrub_text
from ftcot_hf.utils.shards import SAMPLE_ATTRIBUTE, discard_staged

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
