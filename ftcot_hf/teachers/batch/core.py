"""The state machine every provider batch API shares: :class:`BatchTeacher`. A provider subclasses it and only speaks
its API (``openai.py``: ``/v1/files`` + ``/v1/batches``; ``anthropic.py``: ``/v1/messages/batches``): one line of a
request, submitting lines, a batch's status, its results.

One call of :meth:`BatchTeacher.generate` is one round: its requests become lines (``custom_id`` = our request key:
the request cache's digest with the sample range, :func:`batch_key`), the lines go out in batches split at the
provider's limits, and the results are yielded as each batch ends, so :class:`~ftcot_hf.teachers.cache.CachedTeacher`
stores each one as it is read. The order, and why:

1. *Record, then submit, then record the id, then wait.* Each batch is written to the request cache's database
   (``batch_jobs``, ``batch_lines``) as an intent before it is created and with its id once created, before the
   command waits: a killed command (kill -9, SIGTERM, a closed laptop) re-run the same way polls the batches that
   exist and never submits a line twice. An intent left without an id (killed between the two writes, a
   millisecond) is looked up at the provider (``find``: OpenAI's batch metadata names it); where the API cannot
   say (Anthropic), its lines are submitted again.
2. *Poll with backoff*: ``poll_interval`` seconds, times 1.5 per quiet poll up to ``max_poll_interval``.
3. *Download everything an ended batch has* (output and error files, an expired batch's finished lines too: a
   finished response is never dropped), store each result, the lines of batches other runs submitted included.
4. *Resubmit exactly the missing or failed lines* (error file, non-200 lines, an expired/cancelled/failed batch's
   unanswered ones), up to ``max_retries`` rounds, then count them as failed as the online path does
   (:class:`~ftcot_hf.teachers.base.FailedRequest`): a re-run asks for exactly those again.

``wait=False`` (``ftcot teach --no_wait``) submits, collects what has already ended, and raises
:class:`BatchesPending` (the command prints how to collect and exits 0) while batches still run. The budget
(``--max_requests`` counts lines; ``--max_cost`` at the batch prices) refuses a batch whose worst case would pass it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ftcot_hf.teachers.base import (
    FailedRequest,
    Generation,
    Request,
    RequestFailedError,
    SamplingParams,
    Teacher,
    TeacherError,
    unknown_options,
)
from ftcot_hf.teachers.batch.client import ApiClient, ApiError
from ftcot_hf.teachers.batch.state import BatchState, Line, batch_key
from ftcot_hf.teachers.http.urls import display_url, register_secrets, resolve_api_key, split_urls

logger = logging.getLogger(__name__)

T = TypeVar("T", bound="BatchTeacher")
FINAL = ("ended", "expired", "cancelled", "failed")
"""A batch in one of these states will not change: what it has is downloaded, what it lacks is asked again."""


class BatchesPending(TeacherError):
    """``wait=False``: batches were submitted (or still run) and nothing waits for them. Not a failure: ``ftcot
    teach --no_wait`` prints this message (how to collect) and exits 0."""

    def __init__(self, message: str, batch_ids: Sequence[str]):
        super().__init__(message)
        self.batch_ids = list(batch_ids)


@dataclass
class LineResult:
    """What a batch says of one line: its samples (``gens``), or why it has none (``error``); ``usage`` is what
    the provider billed for it (None: nothing said)."""

    custom_id: str
    gens: list[Generation] | None = None
    error: str | None = None
    usage: tuple[int, int] | None = None


@dataclass
class BatchStatus:
    """A batch's state: ``running`` or one of :data:`FINAL`; ``detail`` is the provider's word for it."""

    state: str
    detail: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class BatchTeacher(ApiClient, Teacher):
    """A teacher behind a provider's batch API (the state machine; subclasses speak an API).

    Args:
        model: the model name (``gpt-4o-mini``, ``claude-3-5-haiku-latest``, the name a vLLM server serves).
        base_url: the API root (ending in ``/v1``); several: batches go round the list, each polled where it went.
        api_key: else ``$<api_key_env>`` (the API's default variable), else ``"EMPTY"``; never written anywhere.
        wait: False (``ftcot teach --no_wait``): submit, collect what has ended, and stop (:class:`BatchesPending`).
        poll_interval / max_poll_interval: seconds between polls: from the first, times 1.5 per poll that finds no
            batch ended, up to the second.
        max_retries: rounds of resubmitting the lines a batch did not answer (expired, cancelled, failed batches,
            error lines); also the retries of one API call (5xx, 429, a refused connection).
        max_batch_lines / max_batch_bytes: a batch's size at most (default: the provider's limits).
        timeout: seconds per API call (an upload of 200 MB included).
        state_path: the SQLite file recording the batches (default: the request cache's file, set by
            :class:`~ftcot_hf.teachers.cache.CachedTeacher`; else ``$HF_HOME/ftcot/teacher_cache.sqlite``).
        extra_body: fields merged into every request's body; part of ``identity()``.
    """

    needs_model = needs_base_url = True  # checked before any work (Teacher.check_flags)

    default_api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    has_n: ClassVar[bool] = True
    """One line asks for ``n`` samples (OpenAI); False: one line per sample (Anthropic)."""
    provider_max_lines: ClassVar[int] = 50_000
    provider_max_bytes: ClassVar[int] = 200 * 1024 * 1024
    supports_budget: ClassVar[bool] = True
    batch_pricing: ClassVar[bool] = True
    """Billed at the provider's batch prices (``ftcot teach --batch_discount``)."""

    # -- what a provider implements --------------------------------------------------------------------------------
    def line(self, custom_id: str, request: Request, params: SamplingParams, n: int) -> dict[str, Any]:
        """One line of a batch asking for ``n`` samples of ``request``."""
        raise NotImplementedError

    def submit(self, base: str, lines: list[dict[str, Any]], job: str) -> str:
        """Create a batch of ``lines`` at ``base``; returns its id. ``job`` is our name for it (put where
        :meth:`find` can see it)."""
        raise NotImplementedError

    def find(self, base: str, job: str) -> str | None:
        """The id of a batch created for ``job`` (its id was never recorded: killed in between); None: none, or the
        API cannot tell."""
        return None

    def status(self, base: str, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    def results(self, base: str, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        """Every result an ended batch has (answers and errors), as it is read."""
        raise NotImplementedError

    # -- construction ----------------------------------------------------------------------------------------------
    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str],
        api_key: str | None = None,
        *,
        wait: bool = True,
        poll_interval: float = 30.0,
        max_poll_interval: float = 600.0,
        max_retries: int = 3,
        max_batch_lines: int | None = None,
        max_batch_bytes: int | None = None,
        timeout: float = 600.0,
        state_path: str | None = None,
        extra_body: dict[str, Any] | None = None,
        api_key_env: str | None = None,
    ):
        label = self.backend
        if not model:
            raise ValueError(f"{label} teacher: model is empty; give the model's name (--teacher_model).")
        for name, value in (("poll_interval", poll_interval), ("max_poll_interval", max_poll_interval)):
            if not value >= 0:
                raise ValueError(f"{label} teacher: {name} must be >= 0 seconds, not {value}.")
        if max_retries < 0:
            raise ValueError(f"{label} teacher: max_retries must be >= 0, not {max_retries}.")
        for name, value in (("max_batch_lines", max_batch_lines), ("max_batch_bytes", max_batch_bytes)):
            if value is not None and value < 1:
                raise ValueError(f"{label} teacher: {name} must be >= 1, not {value}.")
        if not timeout > 0:
            raise ValueError(f"{label} teacher: timeout must be > 0 seconds, not {timeout}.")
        self.api_key_env = api_key_env or self.default_api_key_env
        if api_key_env and not api_key and not os.environ.get(api_key_env):
            raise ValueError(f"{label} teacher: api_key_env={api_key_env!r} names an environment variable that is "
                             "not set: export it, or pass api_key.")  # fmt: skip
        self.model = model
        self.urls = split_urls(base_url, label)
        self.wait = bool(wait)
        self.poll_interval, self.max_poll_interval = float(poll_interval), float(max(max_poll_interval, poll_interval))
        self.max_retries = int(max_retries)
        self.max_lines = min(max_batch_lines or self.provider_max_lines, self.provider_max_lines)
        self.max_bytes = min(max_batch_bytes or self.provider_max_bytes, self.provider_max_bytes)
        self.timeout = float(timeout)
        self.extra_body = dict(extra_body) if extra_body else None
        self.keep_going = False
        self._keys = {url: resolve_api_key(api_key, url, self.api_key_env) for url in self.urls}
        register_secrets([k for k in self._keys.values() if k and k != "EMPTY"])
        self._state_path = state_path
        self._state: BatchState | None = None
        self._next_url = 0
        self._pending_lines = 0
        self.stats: Counter[str] = Counter()
        """``batches`` submitted, ``requests`` (lines submitted), ``retries`` (lines resubmitted),
        ``failed_requests`` (lines failed for good), ``api_calls``, ``polls``, ``billed_prompt_tokens``/
        ``billed_completion_tokens``, ``collected`` (results read from batches)."""

    @classmethod
    def from_config(
        cls: type[T], *, model: str | None = None, base_url: str | Sequence[str] | None = None,
        tasks: Sequence[Any] = (), data_dir: str | os.PathLike | None = None, **kwargs: Any,
    ) -> T:  # fmt: skip
        """The teacher of a teach config (``--teacher_model``, ``--base_url``, ``--teacher_kwargs``)."""
        label = cls.backend
        if not model:
            raise ValueError(f"The {label} teacher needs --teacher_model: the model the batches ask.")
        if not base_url:
            raise ValueError(f"The {label} teacher needs --base_url: the API root, e.g. {cls.example_url}.")
        unknown = unknown_options(label, kwargs, list(cls.option_types() or ()))
        if unknown:
            raise ValueError(unknown)
        return cls(model, base_url, **kwargs)

    example_url: ClassVar[str] = "https://api.openai.com/v1"

    def attach_cache(self, cache: Any) -> None:
        """Keep the batches' state in the request cache's file (called by ``CachedTeacher``)."""
        if self._state_path is None:
            self._state_path = str(cache.path)

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"backend": self.backend, "model": self.model}
        if self.extra_body:
            identity["extra_body"] = self.extra_body
        return identity

    def counters(self) -> dict[str, int]:
        return {"billed_prompt_tokens": 0, "billed_completion_tokens": 0, **self.stats}

    def live(self) -> dict[str, Any]:
        return {"in_flight": self._pending_lines, "limit": self._pending_lines, "retries": self.stats["retries"]}

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    def _store(self) -> BatchState:
        if self._state is None:
            from ftcot_hf.teachers.cache import default_cache_path

            path = Path(self._state_path) if self._state_path else default_cache_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._state = BatchState(path)
        return self._state

    # -- the round -------------------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        from ftcot_hf.teachers.cache import request_digest

        requests = list(requests)
        identity = self.identity()
        lines: dict[str, Line] = {}
        slots: dict[int, list[Generation | None]] = {}
        self._by_pos: dict[int, list[str]] = {}  # a request's lines (one per sample where the API has no n)
        for pos, request in enumerate(requests):
            if request.n <= 0:
                yield pos, []
                continue
            digest = request_digest(identity, request)
            slots[pos] = [None] * request.n
            units = [(0, request.n)] if self.has_n else [(j, 1) for j in range(request.n)]
            for offset, count in units:
                cid = batch_key(digest, request.first_index + offset, count)
                lines[cid] = Line(cid, pos, offset, count, digest, request.first_index)
                self._by_pos.setdefault(pos, []).append(cid)
        state = self._store()
        attempts: Counter[str] = Counter()
        open_: set[str] = set(lines)  # lines without a result (or a failure for good) yet
        delay = self.poll_interval
        while open_:
            jobs = state.open_jobs(self.backend, sorted(open_))
            for job in [j for j in jobs if state.job(j)[1] == "submitting"]:
                if not self._recover(job):
                    del jobs[job]
            held = {cid for cids in jobs.values() for cid in cids}
            fresh = [lines[cid] for cid in sorted(open_ - held, key=lambda c: (lines[c].pos, lines[c].offset))]
            if fresh:
                for request_pos, failure in self._submit(requests, fresh, attempts, jobs):
                    for cid in self._by_pos.get(request_pos, ()):
                        open_.discard(cid)
                    if slots.pop(request_pos, None) is not None:
                        yield request_pos, failure
            self._pending_lines = sum(len(c) for c in jobs.values())
            if not jobs:
                continue
            ended = False
            for job in list(jobs):
                batch_id, _, shown = state.job(job)
                base = self._url_of(shown)
                try:
                    status = self.status(base, batch_id)  # type: ignore[arg-type]
                except ApiError as e:
                    if e.status != 404:
                        raise
                    # the provider lost it (another account, a deleted batch): its lines are asked again
                    logger.warning("%s teacher: the recorded batch %s is not found at %s: its requests are submitted "
                                   "again", self.backend, batch_id, shown)  # fmt: skip
                    status = BatchStatus("failed", "was not found at the provider")
                self.stats["polls"] += 1
                if status.state not in FINAL:
                    continue
                ended = True
                yield from self._collect(job, base, batch_id, status, lines, slots, open_, attempts)  # type: ignore[arg-type]
                state.finish(job, status.state)
            if ended:
                delay = self.poll_interval
                continue
            running = [state.job(j)[0] for j in jobs]
            if not self.wait:
                raise BatchesPending(self._pending_message(running), running)  # type: ignore[arg-type]
            logger.info("%s teacher: %d batch(es) running (%s); next poll in %.0f s", self.backend, len(running),
                        ", ".join(map(str, running)), delay)  # fmt: skip
            time.sleep(delay)
            delay = min(self.max_poll_interval, max(delay * 1.5, delay + 0.001))
        self._pending_lines = 0

    def _pending_message(self, batch_ids: Sequence[str]) -> str:
        return (f"{len(batch_ids)} {self.backend} batch(es) submitted and still running ({', '.join(batch_ids)}); "
                "nothing was waited for (--no_wait). Collect them by running the same command again (it submits "
                "nothing twice: the batches are recorded in the request cache); without --no_wait it waits until "
                "they end.")  # fmt: skip

    def _recover(self, job: str) -> bool:
        """An intent without a batch id: find the batch at the provider, or give its lines up for resubmission."""
        state = self._store()
        _, _, shown = state.job(job)
        batch_id = self.find(self._url_of(shown), job)
        if batch_id is not None:
            state.submitted(job, batch_id)
            return True
        state.finish(job, "abandoned")
        logger.warning("%s teacher: a batch recorded as being submitted (%s) was not found at %s: its requests are "
                       "submitted again", self.backend, job, shown)  # fmt: skip
        return False

    def _url_of(self, shown: str) -> str:
        for url in self.urls:
            if display_url(url) == shown:
                return url
        return self.urls[0]  # the server moved (another port): the batches are asked of the API root given now

    def _submit(
        self, requests: list[Request], fresh: list[Line], attempts: Counter[str], jobs: dict[str, list[str]]
    ) -> Iterator[tuple[int, FailedRequest]]:
        """Submit ``fresh`` in batches within the provider's limits and the budget (``jobs`` gains them); yields a
        refusal for each request the budget did not let out."""
        budget, state = self.budget, self._store()
        chunks: list[list[tuple[Line, dict[str, Any]]]] = [[]]
        size = 0
        for x in fresh:
            request = requests[x.pos]
            params = request.params
            body = self.line(x.custom_id, request, params, x.count)
            if self.extra_body:
                body = self._with_extra(body)
            length = len(json.dumps(body, ensure_ascii=False).encode()) + 1
            if chunks[-1] and (len(chunks[-1]) >= self.max_lines or size + length > self.max_bytes):
                chunks.append([])
                size = 0
            if budget is not None:
                x.worst = budget.worst_case(len(request.prompt.encode()) + 64, params.max_tokens, x.count)
            chunks[-1].append((x, body))
            size += length
        refused: set[int] = set()
        for chunk in chunks:
            if not chunk:
                continue
            if budget is not None:
                worst = sum(x.worst for x, _ in chunk)
                if (
                    budget.max_cost is not None
                    and budget.reason is None
                    and (budget.cost + budget.reserved + worst > budget.max_cost)
                ):
                    budget.reason = (f"max_cost ${budget.max_cost:g} would be passed by a batch of {len(chunk)} "
                                     f"requests (its worst case ${worst:.4f} at the batch prices, ${budget.cost:.4f} "
                                     "billed so far): the batch was not submitted")  # fmt: skip
                admitted = []
                for x, body in chunk:
                    if budget.admit(x.worst):
                        admitted.append((x, body))
                    else:
                        refused.add(x.pos)
                for x, _ in admitted:
                    if x.pos in refused:  # a request with a sample refused is refused whole: un-admit the others
                        budget.requests -= 1
                        budget.release(x.worst)
                chunk = [(x, body) for x, body in admitted if x.pos not in refused]
            if not chunk:
                continue
            url = self.urls[self._next_url % len(self.urls)]
            self._next_url += 1
            job = f"ftcot-{uuid.uuid4().hex}"
            state.intent(job, self.backend, display_url(url), [x for x, _ in chunk])
            batch_id = self.submit(url, [body for _, body in chunk], job)
            state.submitted(job, batch_id)
            self.stats["batches"] += 1
            self.stats["requests"] += len(chunk)
            self.stats["retries"] += sum(1 for x, _ in chunk if attempts[x.custom_id])
            jobs[job] = [x.custom_id for x, _ in chunk]
            logger.info("%s teacher: batch %s submitted (%d requests) to %s", self.backend, batch_id, len(chunk),
                        display_url(url))  # fmt: skip
        for pos in sorted(refused):
            assert budget is not None
            yield pos, budget.refusal()

    def _with_extra(self, line: dict[str, Any]) -> dict[str, Any]:
        line = json.loads(json.dumps(line))
        target = line.get("body") if isinstance(line.get("body"), dict) else line.get("params", line)
        target.update(self.extra_body or {})
        return line

    def _collect(
        self, job: str, base: str, batch_id: str, status: BatchStatus, lines: dict[str, Line],
        slots: dict[int, list[Generation | None]], open_: set[str], attempts: Counter[str],
    ) -> Iterator[tuple[int, list[Generation]]]:  # fmt: skip
        """Read an ended batch: each answer of ours yielded once its request is whole, the others' stored in the
        request cache; each line left without an answer asked again (up to ``max_retries``) or failed."""
        recorded = self._store().lines(job)
        budget = self.budget
        answered: set[str] = set()
        errors: dict[str, str] = {}
        for result in self.results(base, batch_id, status) if status.info else ():
            cid = result.custom_id
            if cid not in recorded or cid in answered:
                continue
            self.stats["collected"] += 1
            if result.usage is not None:
                self.stats["billed_prompt_tokens"] += result.usage[0]
                self.stats["billed_completion_tokens"] += result.usage[1]
                if budget is not None:
                    budget.charge(*result.usage)
            if result.gens is None:
                errors[cid] = result.error or "no answer"
                continue
            answered.add(cid)
            x = lines.get(cid)
            if budget is not None and x is not None:
                budget.release(x.worst)
            if x is None or cid not in open_ or x.pos not in slots:  # asked by another run (or failed meanwhile)
                self._store_elsewhere(recorded[cid], result.gens)
                continue
            open_.discard(cid)
            slot = slots[x.pos]
            slot[x.offset : x.offset + x.count] = result.gens[: x.count]
            if all(g is not None for g in slot):
                del slots[x.pos]
                yield x.pos, slot  # type: ignore[misc]
        why = f"the batch {batch_id} {status.detail or status.state}"
        for cid in recorded:
            if cid in answered or cid not in open_:
                continue
            x = lines[cid]
            attempts[cid] += 1
            error = errors.get(cid) or f"not answered ({why})"
            if attempts[cid] <= self.max_retries:
                logger.info("%s teacher: request %s %s; submitted again (%d/%d)", self.backend, cid[:12], error,
                            attempts[cid], self.max_retries)  # fmt: skip
                continue
            if budget is not None:
                budget.release(x.worst)
            self.stats["failed_requests"] += 1
            for other in self._by_pos.get(x.pos, ()):
                open_.discard(other)
            if slots.pop(x.pos, None) is not None:
                failure = RequestFailedError(f"{self.backend} teacher ({display_url(base)}, model {self.model!r}): "
                                             f"request {cid[:12]} failed {attempts[cid]} time(s) in batches; last: "
                                             f"{error}")  # fmt: skip
                if not self.keep_going:
                    raise failure
                yield x.pos, FailedRequest(failure)

    def _store_elsewhere(self, recorded: tuple[bytes, int, int], gens: list[Generation]) -> None:
        """An answer to a line no caller asks for now (a batch of an earlier run): into the request cache, so that
        what was paid for is kept."""
        from ftcot_hf.teachers.cache import RequestCache

        digest, first, count = recorded
        cache = RequestCache(self._store().path)
        try:
            cache.store(digest, first, gens[:count])
        finally:
            cache.close()
