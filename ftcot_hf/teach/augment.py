"""Rationale augmentation: task records in, one row per teacher sample out (Fine-tune-CoT step 1-2).

``RationaleAugmenter`` is a callable for ``Dataset.map(batched=True)``. For each record it asks the teacher for D
stage-1 rationales (Zero-shot-CoT, temperature T), then for each rationale a greedy stage-2 answer, parses it with the
task's answer parser and marks it correct or not (the paper's ``two_stage`` protocol). Chat and reasoning models get
the ``one_stage`` protocol: one request per sample asking for the reasoning and a final "Therefore, the answer is"
line. A reply that carries a reasoning trace (``<think>...</think>``, or a server's ``reasoning_content``) is never
sent to a second stage: the trace is the rationale, the answer is read from the visible text after it, and a trace
that never closed is incomplete (not kept, counted). :func:`augment` runs the map, applies the filter
(``keep="correct" | "all" | "pass_rate"``; a reply cut by the token limit is not kept by ``correct`` unless
``keep_truncated``; the data recipe's other filters: :mod:`ftcot_hf.teach.recipe`) and returns the
:class:`YieldReport`.

Why this file is ~630 lines: it is the augmenter (the three protocols and their ledger, which share its state) and
:func:`augment`, the streaming loop that feeds it chunks and keeps the yield, the sample and the progress bar; the
rows go to ``utils/shards.py``, the filters of the data recipe to ``recipe.py``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task, resolve_task, score_completion
from ftcot_hf.tasks.prompts import (
    ANSWER_MAX_TOKENS,
    ANSWER_PHRASE,
    RATIONALE_MAX_TOKENS,
    one_stage_prompt,
    stage1_prompt,
    stage2_prompt,
)
from ftcot_hf.teach.recipe import KEEP_MODES, RowFilter
from ftcot_hf.teach.yields import STAGE_KEYS, YieldReport
from ftcot_hf.teachers.base import (
    Generation,
    Request,
    SamplingParams,
    Teacher,
    is_failure,
    is_unsent,
    split_reasoning,
)
from ftcot_hf.utils.memory import release_free_heap
from ftcot_hf.utils.shards import FLUSH_SECONDS, RATIONALE_SAMPLE, SAMPLE_ATTRIBUTE, ShardWriter, read_batches

logger = logging.getLogger(__name__)

AUGMENTED_COLUMNS = (
    "completion_index",
    "rationale",
    "teacher_answer",
    "teacher_prediction",
    "correct",
    "finish_reason",
    "answer_finish_reason",
    "temperature",
    "teacher",
)

TRUNCATED = "length"
"""The finish reason of a reply cut by the token limit (``max_tokens``)."""
INCOMPLETE = "incomplete"
"""The finish reason given to a reasoning trace that never closed (``<think>`` without ``</think>``)."""
PROTOCOLS = ("auto", "two_stage", "one_stage")
STATUS_EVERY = 0.2
"""Seconds between two reads of the teacher's state for the progress bar."""
REASONING_MAX_TOKENS = 4096
"""Default token budget of a one-stage reply: a reasoning trace runs to thousands of tokens."""

FUNDAMENTALS_PROMPT = (
    "Q: {question}\nCorrect answer: {answer}\n"
    "List the fundamental knowledge and skills needed to solve this question.\nFundamentals:"
)
COMMON_ERRORS_PROMPT = (
    "Q: {question}\nCorrect answer: {answer}\n"
    "List the common mistakes a student could make on this question.\nCommon errors:"
)


@dataclass
class RationaleAugmenter:
    """Callable for ``Dataset.map(batched=True)``: records -> one row per teacher sample.

    Args:
        teacher: any teacher backend (wrap it in ``CachedTeacher`` to make runs resumable).
        task: the :class:`~ftcot_hf.Task` or a registered task's name (selects the answer parser, and the Kojima
            trigger when ``trigger="kojima"``).
        degree: D, samples per question (1-64).
        temperature: sampling temperature; default 0.7 when D > 1, greedy when D = 1.
        trigger: ``"generic"`` (the paper's ``Therefore, the answer is``) or ``"kojima"`` (task-specific).
        resample_until: keep sampling questions with fewer than this many correct rationales...
        max_extra_samples: ...up to this many extra samples in all (the budget cap).
        annotations: also ask the teacher for ``fundamentals`` and ``common_errors`` per question (Teacher-LM style).
        keep_truncated: let ``keep="correct"`` keep a sample whose rationale or stage-2 answer was cut by the token
            limit (``finish_reason == "length"``); by default such a sample is left out (its reasoning is
            incomplete, or its answer was parsed from a cut reply). Either way it is counted in the yield report.
    """

    teacher: Teacher
    task: Task | str
    degree: int = 1
    temperature: float | None = None
    trigger: Literal["generic", "kojima"] = "generic"
    max_rationale_tokens: int | None = None
    """Default: 128 for two-stage (the paper's), 4096 for one-stage (reasoning traces are long)."""
    max_answer_tokens: int = ANSWER_MAX_TOKENS
    protocol: Literal["auto", "two_stage", "one_stage"] = "auto"
    """``auto``: two-stage for completion endpoints, one-stage for chat (a reasoning reply is one-stage anyway)."""
    interleave_stages: bool = True
    """Two-stage with a concurrency-bounded (HTTP) teacher: send the questions in chunks of that bound, each chunk's
    stage 2 right after its stage 1, so a server's prefix cache still holds the stage-1 prompt that every stage-2
    prompt starts with (llama.cpp keeps one slot: sent later, each stage-2 prompt is prefilled from scratch)."""
    mode: Literal["paper", "robust"] = "paper"
    resample_until: int | None = None
    max_extra_samples: int = 0
    annotations: bool = False
    chat: bool = False
    progress: bool = False
    """Show a tqdm bar per stage (the CLI turns it on)."""
    keep_truncated: bool = False
    counters: Callable[[], Mapping[str, int]] | None = None
    """Where the ledger reads what the teacher did (monotone counts, diffed around each stage's requests): default
    the teacher's own :meth:`~ftcot_hf.teachers.base.Teacher.counters`. ``ftcot teach`` adds the request cache's
    ``requests`` and ``cache_hits`` to the backend's counts."""
    extra_samples: int = field(default=0, init=False)
    failed_requests: int = field(default=0, init=False)
    """Teacher requests that failed for good (a teacher with ``keep_going``): their samples are left out."""
    unsent_requests: int = field(default=0, init=False)
    """Teacher requests not sent because the teacher's budget was spent: their samples are left out."""
    last_error: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.task = resolve_task(self.task)
        if not 1 <= self.degree <= 64:
            raise ValueError(f"degree (D) must be between 1 and 64, got {self.degree}.")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {self.temperature}.")
        if self.resample_until is not None and self.resample_until < 0:
            raise ValueError(f"resample_until must be >= 1 correct rationale per question, got {self.resample_until}.")
        if self.max_extra_samples < 0:
            raise ValueError(f"max_extra_samples must be >= 0, got {self.max_extra_samples}.")
        if self.temperature is None:
            self.temperature = 0.7 if self.degree > 1 else 0.0
        if self.degree > 1 and self.temperature == 0:
            raise ValueError("D > 1 with temperature 0 would repeat one greedy rationale D times: set temperature.")
        self._trigger = self.task.answer_trigger(self.trigger)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}.")
        self._protocol = ("one_stage" if self.chat else "two_stage") if self.protocol == "auto" else self.protocol
        if self.max_rationale_tokens is None:
            self.max_rationale_tokens = RATIONALE_MAX_TOKENS if self._protocol == "two_stage" else REASONING_MAX_TOKENS
        self.tokens = Counter()
        self.stage_counts: dict[str, Counter[str]] = {}
        """The ledger per stage (``rationale``, ``answer``, ``annotations``), filled as requests complete."""
        self._billing_known = False
        self._outer: Any = None
        """:func:`augment`'s bar while it runs (the per-chunk bars are off): it shows the teacher's state."""

    def fingerprint(self) -> str:
        """A stable fingerprint for ``Dataset.map(new_fingerprint=...)`` (hashing a model would take seconds)."""
        skip = ("teacher", "extra_samples", "progress", "task", "keep_truncated", "interleave_stages",
                "failed_requests", "last_error", "counters", "unsent_requests")  # fmt: skip
        config = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        config["teacher"] = self.teacher.identity()
        config["task"] = [self.task.name, self.task.answer_type]
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _chunk(self, n: int) -> int:
        bound = self.teacher.max_concurrency
        if not self.interleave_stages or self._protocol != "two_stage" or not isinstance(bound, int) or bound < 1:
            return max(n, 1)
        return bound

    def _bar(self, n: int) -> Any:
        """One bar over the questions when they go in chunks (a bar per chunk and stage would be dozens)."""
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=n, desc=f"{self.task.name}: questions", unit="q", leave=False)

    def _progress(self, iterable, total: int, what: str, quiet: Any = None):
        """``iterable`` counted on a bar of its own (or, ``quiet``, on the chunks' bar), whose postfix shows what the
        teacher is doing (requests in flight, timeouts, retries, tokens/s)."""
        if not self.progress:  # under augment()'s own bar: the teacher's state goes on that bar
            return self._with_status(iterable, self._outer) if self._outer is not None else iterable
        if quiet is not None:
            return self._with_status(iterable, quiet)
        from tqdm.auto import tqdm

        return self._with_status(tqdm(iterable, total=total, desc=f"{self.task.name}: {what}", unit="req",
                                      leave=False), None)  # fmt: skip

    def _with_status(self, iterable, bar: Any) -> Iterator[Any]:
        bar = bar if bar is not None else iterable
        shown = 0.0
        for item in iterable:
            now = time.monotonic()
            if now - shown >= STATUS_EVERY:  # a cached re-run yields ~10k results/s: reading the state each was 10 %
                shown = now
                status = teacher_status(self.teacher.live())
                if status:
                    bar.set_postfix_str(status, refresh=False)
            yield item

    def _stage1(
        self, questions: list[str], first: list[int], counts: list[int], quiet: Any = None
    ) -> dict[tuple[int, int], Any]:
        params = SamplingParams(temperature=self.temperature, max_tokens=self.max_rationale_tokens)
        prompt = stage1_prompt if self._protocol == "two_stage" else one_stage_prompt
        requests = [
            Request(prompt(q), params, n=c, first_index=f, chat=self.chat)
            for q, f, c in zip(questions, first, counts, strict=True)
        ]
        out: dict[tuple[int, int], Any] = {}
        for pos, gens in self._progress(self._generate("rationale", requests), len(requests), "rationales", quiet):
            if self._failed(gens, "rationale"):  # this question's samples of the request have no row
                continue
            for j, g in enumerate(gens):
                out[pos, first[pos] + j] = g
        return out

    def _generate(self, stage: str, requests: list[Request]) -> Iterator[tuple[int, Any]]:
        """The teacher's results, with what it took (requests sent, cache hits, retries, timeouts, billed tokens)
        added to ``stage``'s ledger once they are all in (the stages' requests never overlap in time)."""
        counts = self.stage_counts.setdefault(stage, Counter())
        read = self.counters or self.teacher.counters
        before = dict(read())
        results = 0
        for item in self.teacher.generate(requests):
            results += 1
            yield item
        after = dict(read())
        for key, value in after.items():
            counts[key] += value - before.get(key, 0)
        if "requests" not in after:  # a bare backend (no request cache): every request was sent
            counts["requests"] += results
        self._billing_known |= "billed_prompt_tokens" in after

    def _failed(self, gens: Any, stage: str) -> bool:
        """Count a request that failed for good or was not sent (a :class:`~ftcot_hf.teachers.base.FailedRequest`)."""
        if not is_failure(gens):
            return False
        if is_unsent(gens):
            self.unsent_requests += 1
            self.stage_counts[stage]["unsent_results"] += 1
            return True
        self.failed_requests += 1
        self.stage_counts[stage]["failed"] += 1
        self.last_error = str(gens.error)
        return True

    def _tally(self, stage: str, g: Generation) -> None:
        """Count the tokens of a sample that has a row."""
        counts = self.stage_counts.setdefault(stage, Counter())
        for key, value in (("prompt", g.prompt_tokens), ("completion", g.completion_tokens)):
            self.tokens[key] += value or 0
            counts[f"{key}_tokens"] += value or 0

    def _one_reply(self, g: Generation) -> tuple[Generation, Generation] | None:
        """(rationale, answer) read from one reply that carries its answer (a reasoning trace, or the one-stage
        protocol); None when the reply is a plain stage-1 rationale that needs its stage-2 answer."""
        parts = split_reasoning(g.text)
        if parts.trace is None and self._protocol == "two_stage":
            return None
        if parts.trace is not None:
            rationale, visible, complete = parts.trace, parts.answer, parts.complete
        else:
            at = g.text.rfind(ANSWER_PHRASE)
            rationale, visible, complete = (g.text[:at] if at != -1 else g.text).strip(), g.text, True
        finish = g.finish_reason if complete or g.finish_reason == TRUNCATED else INCOMPLETE
        return Generation(rationale, finish, g.prompt_tokens, g.completion_tokens), Generation(visible, finish)

    def _answers(self, questions: list[str], rationales: dict, quiet: Any = None) -> tuple[dict, set]:
        """The answer of every sample: from the reply itself where it carries one (its rationale replaced by the
        trace), else from a greedy stage-2 request. Returns the answers and the keys answered in one reply."""
        answered, single = {}, set()
        for key, g in list(rationales.items()):
            split = self._one_reply(g)
            if split is not None:
                rationales[key], answered[key] = split
                single.add(key)
        rest = [(i, j, questions[i], g.text) for (i, j), g in rationales.items() if (i, j) not in single]
        answered.update(self._stage2(rest, quiet) if rest else {})
        for key in rationales:  # every sample received counts, with a row or not (it was billed)
            self._tally("rationale", rationales[key])
            if key in answered and key not in single:
                self._tally("answer", answered[key])
        for key in [k for k in rationales if k not in answered]:  # its stage-2 request failed: no row
            del rationales[key]
        return answered, single

    def _score(self, key: tuple[int, int], answered: dict, single: set, gold: str) -> dict[str, Any]:
        if answered[key].finish_reason == INCOMPLETE:
            return {"prediction": None, "correct": False}
        prefix = ANSWER_PHRASE if key in single else None
        return score_completion(self.task, answered[key].text, gold, prefix=prefix, mode=self.mode)

    def _stage2(self, items: list[tuple[int, int, str, str]], quiet: Any = None) -> dict[tuple[int, int], Any]:
        params = SamplingParams(temperature=0.0, max_tokens=self.max_answer_tokens)
        requests = [Request(stage2_prompt(q, r, self._trigger), params, chat=self.chat) for _, _, q, r in items]
        out: dict[tuple[int, int], Any] = {}
        for pos, gens in self._progress(self._generate("answer", requests), len(requests), "answers", quiet):
            if self._failed(gens, "answer"):
                continue
            i, j, _, _ = items[pos]
            out[i, j] = gens[0]
        return out

    def _annotate(self, questions: list[str], answers: list[str]) -> dict[str, list[str]]:
        params = SamplingParams(temperature=0.0, max_tokens=self.max_rationale_tokens)
        columns: dict[str, list[str]] = {}
        for column, template in (("fundamentals", FUNDAMENTALS_PROMPT), ("common_errors", COMMON_ERRORS_PROMPT)):
            requests = [
                Request(template.format(question=q, answer=a), params, chat=self.chat)
                for q, a in zip(questions, answers, strict=True)
            ]
            values = [""] * len(requests)
            for pos, gens in self._generate("annotations", requests):
                if not self._failed(gens, "annotations"):
                    values[pos] = gens[0].text.strip()
                    self._tally("annotations", gens[0])
            columns[column] = values
        return columns

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        missing = [c for c in ("sample_index", "question", "answer") if c not in batch]
        if missing:
            raise FtcotError(
                f"RationaleAugmenter needs task records with columns sample_index, question, answer; the dataset "
                f"lacks {', '.join(missing)} (it has {', '.join(batch)}). Use ftcot_hf.load_task({self.task.name!r})."
            )
        questions, answers = batch["question"], batch["answer"]
        n = len(questions)
        rationales, answered, single = {}, {}, set()
        step = self._chunk(n)
        bar = self._bar(n) if step < n else None
        for start in range(0, n, step):
            count = min(n, start + step) - start
            part = self._stage1(questions[start : start + count], [0] * count, [self.degree] * count, quiet=bar)
            part = {(start + p, j): g for (p, j), g in part.items()}
            more, more_single = self._answers(questions, part, quiet=bar)
            rationales.update(part)
            answered.update(more)
            single |= more_single
            if bar is not None:
                bar.update(count)
        if bar is not None:
            bar.close()
        correct = {key: self._score(key, answered, single, answers[key[0]]) for key in rationales}
        if self.resample_until:
            self._resample(questions, answers, rationales, answered, correct, single)
        notes = self._annotate(questions, answers) if self.annotations else {}

        # The records' own (human) rationale must not be confused with the teacher's: it is kept as human_rationale.
        renamed = {c: (f"human_{c}" if c in AUGMENTED_COLUMNS else c) for c in batch}
        out: dict[str, list] = {c: [] for c in (*renamed.values(), *AUGMENTED_COLUMNS, *notes)}
        for i, j in sorted(rationales):
            for column, values in batch.items():
                out[renamed[column]].append(values[i])
            scored = correct[i, j]
            out["completion_index"].append(j)
            out["rationale"].append(rationales[i, j].text)
            out["teacher_answer"].append(answered[i, j].text)
            out["teacher_prediction"].append(None if scored["prediction"] is None else str(scored["prediction"]))
            out["correct"].append(bool(scored["correct"]))
            out["finish_reason"].append(rationales[i, j].finish_reason)
            out["answer_finish_reason"].append(answered[i, j].finish_reason)
            out["temperature"].append(float(self.temperature))
            out["teacher"].append(self.teacher.model)
            for column, values in notes.items():
                out[column].append(values[i])
        return out

    def _resample(self, questions, answers, rationales, answered, correct, single) -> None:
        while self.extra_samples < self.max_extra_samples:
            good = Counter(i for (i, _), s in correct.items() if s["correct"])
            drawn: Counter[int] = Counter()  # the next sample index (a failed sample leaves a gap, not a repeat)
            for i, j in rationales:
                drawn[i] = max(drawn[i], j + 1)
            need = [i for i in range(len(questions)) if good[i] < self.resample_until]
            if not need:
                return
            budget = self.max_extra_samples - self.extra_samples
            need = need[:budget]
            if self.temperature == 0:
                logger.warning("resample_until with temperature 0 would repeat the same rationale; skipped.")
                return
            new = self._stage1([questions[i] for i in need], [drawn[i] for i in need], [1] * len(need))
            remapped = {(need[p], j): g for (p, j), g in new.items()}
            more, more_single = self._answers(questions, remapped)
            rationales.update(remapped)
            answered.update(more)
            single |= more_single
            for key in remapped:
                correct[key] = self._score(key, answered, single, answers[key[0]])
            self.extra_samples += len(need)


def teacher_status(live: Mapping[str, Any]) -> str:
    """A progress bar's postfix from a teacher's :meth:`~ftcot_hf.teachers.base.Teacher.live` state:
    ``3/4 in flight, 12 tok/s, 2 retries, 1 timeout`` (empty for a teacher without requests)."""
    if not live:
        return ""
    parts = [f"{live.get('in_flight', 0)}/{live.get('limit', '?')} in flight"]
    rate = live.get("tokens_per_s")
    if rate:
        parts.append(f"{rate:.2g} tok/s" if rate < 10 else f"{rate:.0f} tok/s")
    for key, one, many in (("retries", "retry", "retries"), ("timeouts", "timeout", "timeouts")):
        if live.get(key):
            parts.append(f"{live[key]} {one if live[key] == 1 else many}")
    return ", ".join(parts)


@dataclass
class _Tally:
    """The yield report's counts, added up chunk by chunk (a question's samples are all in one chunk)."""

    questions: int = 0
    samples: int = 0
    correct: int = 0
    with_correct: int = 0
    kept: int = 0
    duplicates: int = 0
    rationale_truncated: int = 0
    answer_truncated: int = 0
    incomplete: int = 0
    empty: int = 0
    truncated_dropped: int = 0
    filters: Counter = field(default_factory=Counter)
    """Rows removed per filter of the data recipe (:data:`ftcot_hf.teach.recipe.FILTERS`)."""

    sample_every: int = 1
    sample: list[dict[str, Any]] = field(default_factory=list)
    """Every ``sample_every``-th kept row's ``sample_index`` and ``rationale``: the decontamination check's sample,
    taken as the rows go by (reading it back from the shards' memory maps kept every page they touched)."""

    def add(self, out: dict[str, list], kept: list[bool], keep_truncated: bool) -> None:
        index, correct = out["sample_index"], out["correct"]
        seen = self.kept
        for i, r, k in zip(index, out["rationale"], kept, strict=True):
            if k:
                if seen % self.sample_every == 0:
                    self.sample.append({"sample_index": i, "rationale": r})
                seen += 1
        finish, answer_finish = out["finish_reason"], out["answer_finish_reason"]
        self.questions += len(set(index))
        self.samples += len(index)
        self.correct += sum(correct)
        self.with_correct += len({i for i, c in zip(index, correct, strict=True) if c})
        self.kept += sum(kept)
        pairs = Counter((i, r.strip()) for i, r, k in zip(index, out["rationale"], kept, strict=True) if k)
        self.duplicates += sum(c - 1 for c in pairs.values())
        self.rationale_truncated += sum(1 for f in finish if f == TRUNCATED)
        self.answer_truncated += sum(1 for f in answer_finish if f == TRUNCATED)
        self.incomplete += sum(1 for f in finish if f == INCOMPLETE)
        self.empty += sum(1 for r, a in zip(out["rationale"], out["teacher_answer"], strict=True)
                          if not (r.strip() and a.strip()))  # fmt: skip
        if not keep_truncated:
            self.truncated_dropped += sum(1 for c, f1, f2 in zip(correct, finish, answer_finish, strict=True)
                                          if c and TRUNCATED in (f1, f2))  # fmt: skip


def yield_report(augmenter: RationaleAugmenter, tally: _Tally) -> YieldReport:
    """The yield report of an augmentation run from its counts and the augmenter's ledger."""
    report = YieldReport(augmenter.task.name, augmenter.teacher.model, augmenter.degree, float(augmenter.temperature))
    report.questions, report.samples, report.correct = tally.questions, tally.samples, tally.correct
    report.questions_without_correct = tally.questions - tally.with_correct
    report.kept, report.duplicates = tally.kept, tally.duplicates
    report.extra_samples = augmenter.extra_samples
    report.rationale_truncated, report.answer_truncated = tally.rationale_truncated, tally.answer_truncated
    report.incomplete, report.empty = tally.incomplete, tally.empty
    report.protocol = augmenter._protocol
    report.failed_requests = augmenter.failed_requests
    report.unsent_requests = augmenter.unsent_requests
    _ledger(report, augmenter)
    report.truncated_dropped = tally.truncated_dropped
    report.filters = dict(tally.filters)
    return report


def _ledger(report: YieldReport, augmenter: RationaleAugmenter) -> None:
    """The ledger per stage and its totals. A failed-but-billed answer's tokens count in the totals (they were
    paid for); the billed tokens (what the cost is computed from) are those of the answers received in this run."""
    for stage, c in augmenter.stage_counts.items():
        entry = {key: int(c.get(key, 0)) for key in STAGE_KEYS}
        entry["failed"] = int(c.get("failed", 0))  # from the results (the backend's count may include retried ones)
        entry["unsent"] = int(c.get("unsent_results", 0))
        entry["prompt_tokens"] += int(c.get("failed_billed_prompt_tokens", 0))
        entry["completion_tokens"] += int(c.get("failed_billed_completion_tokens", 0))
        if not augmenter._billing_known:
            del entry["billed_prompt_tokens"], entry["billed_completion_tokens"]
        report.stages[stage] = entry
    stages = report.stages.values()
    report.prompt_tokens = sum(e["prompt_tokens"] for e in stages)
    report.completion_tokens = sum(e["completion_tokens"] for e in stages)
    for field_name, key in (("retries", "retries"), ("timeouts", "timeouts"), ("failed_billed", "failed_billed")):
        setattr(report, field_name, sum(e[key] for e in stages))
    if augmenter._billing_known:
        report.billed_prompt_tokens = sum(e["billed_prompt_tokens"] for e in stages)
        report.billed_completion_tokens = sum(e["billed_completion_tokens"] for e in stages)


def output_features(features: Any, augmenter: RationaleAugmenter) -> Any:
    """The features of the rows :func:`augment` writes: the records' columns (``human_`` before a name the teacher's
    columns take), the teacher's, and the annotations'."""
    from datasets import Features, Value

    out = {(f"human_{c}" if c in AUGMENTED_COLUMNS else c): f for c, f in features.items()}
    types = {"completion_index": "int64", "correct": "bool", "temperature": "float64"}
    out |= {c: Value(types.get(c, "string")) for c in AUGMENTED_COLUMNS}
    if augmenter.annotations:
        out |= {"fundamentals": Value("string"), "common_errors": Value("string")}
    return Features(out)


def augment(
    dataset: Any,
    augmenter: RationaleAugmenter,
    *,
    keep: Literal["correct", "all", "pass_rate"] = "correct",
    row_filter: RowFilter | None = None,
    batch_size: int = 2048,
    output_dir: str | os.PathLike | None = None,
    flush_seconds: float = FLUSH_SECONDS,
    prices: tuple[float, float] | None = None,
) -> tuple[Any, YieldReport]:
    """Run ``augmenter`` over ``dataset`` (task records), filter, and report the yield, in memory that does not
    grow with the dataset: ``batch_size`` questions at a time, each chunk's kept rows written to Arrow shards in
    ``output_dir`` at once (:class:`~ftcot_hf.utils.shards.ShardWriter`; a temporary folder by default) and
    memory-mapped back at the end. A shard is closed every ``flush_seconds``, so the rows of a long run can be read
    while it goes on: ``load_dataset("arrow", data_files=f"{output_dir}/*.arrow")``.

    Returns the kept rows (``keep="correct"``: only rationales whose parsed answer equals the gold one, all samples of
    a question included, duplicates too, as in the paper; without ``augmenter.keep_truncated``, not those whose
    rationale or answer was cut by the token limit) and the :class:`YieldReport`. ``prices`` ($ per million prompt
    and completion tokens) puts the cost so far on the progress bar. ``row_filter``: the data recipe
    (:class:`~ftcot_hf.teach.recipe.RowFilter`: the pass-rate band, the student-token length limit, near-duplicate
    removal; its ``keep`` replaces ``keep``); the rows each of its filters removed are the report's ``filters``.
    """
    if row_filter is None:
        if keep not in KEEP_MODES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_MODES)}, not {keep!r}.")
        row_filter = RowFilter(keep, augmenter.keep_truncated, augmenter.degree)
    if dataset.num_rows == 0:
        raise FtcotError(f"Nothing to augment: the {augmenter.task.name} dataset given has no rows.")
    if output_dir is None:
        output_dir = tempfile.mkdtemp(prefix=f"ftcot-{augmenter.task.name}-")
        atexit.register(shutil.rmtree, output_dir, True)  # the rows are memory-mapped from it until then
    writer = ShardWriter(output_dir, output_features(dataset.features, augmenter), flush_seconds=flush_seconds)
    expected = dataset.num_rows * augmenter.degree
    tally = _Tally(sample_every=max(1, -(-expected // RATIONALE_SAMPLE)))
    tally.filters.update(dict.fromkeys(row_filter.active, 0))
    bar = _Progress(augmenter, dataset.num_rows, prices) if augmenter.progress else None
    try:
        for batch in read_batches(dataset, batch_size):
            release_free_heap()
            out = augmenter(batch)
            mask, removed = row_filter(out)
            tally.add(out, mask, augmenter.keep_truncated)
            tally.filters.update(removed)
            writer.write({c: [v for v, m in zip(values, mask, strict=True) if m] for c, values in out.items()})
            if bar is not None:
                bar.update(len(batch["question"]), tally.kept)
    finally:
        if bar is not None:
            bar.close()
        writer.close()
    kept = writer.dataset()
    setattr(kept, SAMPLE_ATTRIBUTE, tally.sample)
    report = yield_report(augmenter, tally)
    logger.info("%s: %s", augmenter.task.name, report.to_dict())
    return kept, report


class _Progress:
    """One bar over the questions of a run, with what a long run is judged by: rows kept, requests/s, tokens/s
    and the cost so far. The ETA is the mean rate since the start (``smoothing=0``): it does not jump with each
    chunk's pace."""

    def __init__(self, augmenter: RationaleAugmenter, total: int, prices: tuple[float, float] | None):
        from tqdm.auto import tqdm

        self.augmenter, self.prices = augmenter, prices
        self.read = augmenter.counters or augmenter.teacher.counters
        self.start, self.first = time.monotonic(), dict(self.read())
        self.first_tokens = augmenter.tokens["completion"]
        self.bar = tqdm(total=total, desc=f"Teaching {augmenter.task.name}", unit="q", smoothing=0)
        self.stats: dict[str, Any] = {}
        self.status = ""
        self._inner = augmenter.progress
        augmenter.progress = False  # one bar: the augmenter's per-chunk bars would come and go every chunk
        augmenter._outer = self

    def set_postfix_str(self, status: str, refresh: bool = False) -> None:
        """The teacher's state (requests in flight, tokens/s, retries, timeouts), beside the run's figures."""
        self.status = status
        self._show(refresh)

    def _show(self, refresh: bool) -> None:
        figures = ", ".join(f"{k}={v}" for k, v in self.stats.items())
        self.bar.set_postfix_str(", ".join(filter(None, (figures, self.status))), refresh=refresh)

    def update(self, questions: int, kept: int) -> None:
        now = self.read()
        seconds = max(time.monotonic() - self.start, 1e-9)
        done = {k: now.get(k, 0) - self.first.get(k, 0) for k in ("requests", "billed_prompt_tokens",
                                                                    "billed_completion_tokens")}  # fmt: skip
        if "billed_completion_tokens" not in now:  # a local teacher bills nothing: the samples' own tokens
            done["billed_completion_tokens"] = self.augmenter.tokens["completion"] - self.first_tokens
        postfix = {"kept": kept, "req/s": f"{done['requests'] / seconds:.1f}",
                   "tok/s": f"{done['billed_completion_tokens'] / seconds:.0f}"}  # fmt: skip
        if self.prices is not None:
            cost = (done["billed_prompt_tokens"] * self.prices[0] + done["billed_completion_tokens"] * self.prices[1])
            postfix["cost"] = f"${cost / 1e6:.4f}"
        self.stats = postfix
        self._show(False)
        self.bar.update(questions)

    def close(self) -> None:
        self.bar.close()
        self.augmenter.progress = self._inner
        self.augmenter._outer = None
