"""The transport every HTTP API teacher shares: :class:`HTTPTeacher`. A provider subclasses it and only speaks its
API: :meth:`~HTTPTeacher.request_path`, :meth:`~HTTPTeacher.build_body` (a :class:`Request` -> a JSON body) and
:meth:`~HTTPTeacher.parse_response` (a decoded answer -> :class:`Generation` s); see ``openai.py``.

Why it looks the way it does:

* Teaching a dataset means tens of thousands of independent requests whose latency is the server's, so the
  throughput comes from keeping ``max_concurrency`` requests in flight (a vLLM server batches them), not from
  batching prompts into one request. An asyncio loop in a private thread drives the clients; results reach the
  caller's (synchronous) :meth:`HTTPTeacher.generate` through a queue *as each request completes*, so the request
  cache stores each one at once and a crash loses only what was in flight. The loop lives in its own thread so
  ``generate`` also works where an event loop is already running (Jupyter) and so requests keep flowing while the
  caller is busy with a result. One loop is enough: its client CPU is ~0.2 ms per request, as a bare aiohttp
  client's (``bench/teach_throughput.py``), so one core drives ~4,000 requests/s; a pool of worker processes
  measured +5-12 % only at 5,000 requests/s ideal and nothing at 1 s latency, and was removed.
* Retries, fail-over and the bound on requests in flight are the fleet's (``transport.py``). A *malformed* 200
  answer (not JSON, what ``parse_response`` rejects, too few choices with ``supports_n=True``) is, with
  ``keep_going``, re-asked like a 5xx, up to ``max_retries`` times with the same backoff (a flaky proxy sends one
  now and then); one that stays malformed fails the request with what was wrong (usually: ``base_url`` is not the
  API it should be). Without ``keep_going`` (a caller failing fast) the first one raises.
* A request whose retries are spent raises :class:`RequestFailedError`. With ``keep_going`` (``ftcot teach`` sets
  it) it is yielded as a :class:`FailedRequest` instead and the other requests go on; errors that no retry can fix
  (401, 404, ...) still end the call.
* ``n`` samples of a prompt go in one request where the server does ``n``, else one request per sample. By default
  (``supports_n=None``) the first answer with fewer choices than asked shows the server ignores ``n`` (llama.cpp's
  does): the teacher says so once and sends one request per sample from then on, the missing samples included.
* Errors name the (credential-free) base URL and the model, and never contain an API key.
* ``identity()`` is backend + model (+ ``extra_body``, ``seed``, ``stop`` when set), never the URLs: a fleet serving
  one model shares the cache, and moving a server to another port does not invalidate it.

The file is over 500 lines because :class:`HTTPTeacher` is one state machine whose parts share its counters and its
loop (the options, the ``n`` fallback, the malformed-answer retries, the budget and the ledger); how a call's
requests are worked off is ``schedule.py``, the HTTP transport ``transport.py``.

Why this file is ~740 lines: it is one class whose parts (the loop bridge, the per-request plan, the ``n`` fallback,
the failure hand-over, the budget and the billed counts, the no-reply warning) share the teacher's state; the
transport, which does not, is apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import math
import os
import queue
import threading
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from ftcot_hf.teachers.base import (
    Generation,
    Request,
    RequestFailedError,
    SamplingParams,
    Teacher,
    TeacherError,
    unknown_options,
)
from ftcot_hf.teachers.http import transport as tp
from ftcot_hf.teachers.http.adaptive import MIN_TIMEOUT, describe_rate, describe_seconds
from ftcot_hf.teachers.http.schedule import BACKLOG_PER_SLOT, Backlog, Schedule
from ftcot_hf.teachers.http.transport import Endpoint, Fleet, ResponseError

logger = logging.getLogger(__name__)


class _NotSent(TeacherError):
    """A sample left unsent because another sample of its request failed for good (never leaves ``_call``)."""


T = TypeVar("T", bound="HTTPTeacher")
CHAT_TEMPLATE_TOKENS = 64
"""Tokens a chat template may add around one user message (the budget's prompt bound)."""


def _prompt_billed_once(gens: list[Generation]) -> list[Generation]:
    """The samples of one HTTP answer with its prompt tokens on the first only: a server bills the prompt of an
    ``n``-sample request once, and the ledger sums the samples' prompt tokens."""
    if len(gens) < 2 or not any(g.prompt_tokens for g in gens[1:]):
        return gens
    return [gens[0], *(dataclasses.replace(g, prompt_tokens=0) for g in gens[1:])]


def _env_seconds(name: str, default: float) -> float:
    """Seconds from the environment variable ``name`` (bad values are refused, naming the variable)."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"${name} must be a number of seconds > 0, not {value!r}; unset it for {default:g} s.")
    return seconds


_Plan = tuple[SamplingParams, int, int]
"""(the sampling parameters sent, ``n`` asked for, leading choices of the answer to drop)."""


class HTTPTeacher(Teacher):
    """A teacher behind one or more HTTP API servers (the transport; subclasses speak an API).

    Args:
        model: the served model name.
        base_url: the API root; several (a list, or one comma-separated string) form a fleet: requests go to the
            least busy live server, and a dead one is skipped for ``down_cooldown`` seconds.
        api_key: else ``$<api_key_env>``, else the HF token for Hugging Face hosts, else ``"EMPTY"``.
        max_concurrency: HTTP requests in flight at most (for the whole teacher, across the fleet): the ceiling of
            an adaptive bound that starts at 4, rises by one per window of replies as long as their speed holds and
            halves on a timeout, 429 or 5xx (``adaptive.py``).
        timeout: seconds per HTTP request; None (the default): derived per request, ``max(min_timeout, 3 x its
            max_tokens x the bound / the tokens/s observed)``; until the first reply shows the speed, 30 x
            ``min_timeout``, and the requests then in flight get their derived deadline when it comes.
        min_timeout: the floor of a derived timeout (default ``$FTCOT_MIN_TIMEOUT``, else 60 s); after this long
            without any reply the teacher warns with the speed it measured.
        max_retries: backoff rounds per request after the first try; each round tries every live server once, so
            a request makes at most ``(max_retries + 1) * len(base_url)`` attempts.
        supports_n: ``None`` (auto): ask for ``n`` choices per request and, on the first answer with fewer, log a
            warning and send one request per sample from then on; ``True``: the server does ``n`` (fewer choices
            is an error); ``False``: always one request per sample (sample ``i`` seeded ``seed + i``).
        backoff_base, backoff_max: exponential backoff ``min(backoff_max, backoff_base * 2**k)``, jittered to
            50-100 % of that; a ``Retry-After`` header (seconds) replaces it (plus up to 10 %).
        down_after: consecutive 5xx/timeouts that mark a server down (a refused connection marks it at once).
        down_cooldown: seconds a down server is skipped before being tried again.
        extra_body: extra JSON fields merged into every request body (vLLM's ``top_k``, llama.cpp's
            ``repeat_penalty``...); part of ``identity()`` since they change the output.
        seed: the seed of requests whose sampling parameters have none; part of ``identity()``.
        stop: stop strings added to every request's own; part of ``identity()``.
        api_key_env: the environment variable holding the API key (default: the API's, e.g. ``OPENAI_API_KEY``).
        http_backend: ``"aiohttp"`` (a bare aiohttp session: a quarter of the client CPU per request of the openai
            client, ``bench/teach_throughput.py``), ``"httpx"`` (the openai client with its default transport), or
            ``"auto"`` (aiohttp when it is installed).
    """

    needs_model = needs_base_url = True  # checked before any work (Teacher.check_flags)

    default_api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    """Where the key is read from when neither ``api_key`` nor ``api_key_env`` is given."""
    api_has_n: ClassVar[bool] = True
    """False for an API without ``n`` (one request per sample, always)."""
    base_url_hint: ClassVar[str] = "is base_url the API root?"
    """Said with an answer that is not JSON."""
    supports_budget: ClassVar[bool] = True

    # -- what a provider implements --------------------------------------------------------------------------------
    def request_path(self, request: Request) -> str:
        """The path (below ``base_url``) that ``request`` is POSTed to."""
        raise NotImplementedError

    def build_body(self, request: Request, params: SamplingParams, n: int) -> dict[str, Any]:
        """The JSON body asking for ``n`` samples of ``request.prompt`` with ``params`` (the teacher's ``seed`` and
        ``stop`` already applied; ``n`` is 1 unless the API has ``n``). ``extra_body`` is merged in afterwards."""
        raise NotImplementedError

    def parse_response(self, data: Any, request: Request, params: SamplingParams) -> list[Generation]:
        """Every choice of a decoded 200 answer, in order; a malformed one raises :class:`ResponseError`."""
        raise NotImplementedError

    def usage(self, data: Any) -> tuple[int, int] | None:
        """(prompt, completion) tokens the server billed for a decoded 200 answer, used or not; None when it says
        nothing (here: an OpenAI-style ``usage`` object, which most APIs send)."""
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt, int) and not isinstance(completion, int):
            return None
        return (prompt if isinstance(prompt, int) else 0), (completion if isinstance(completion, int) else 0)

    def status_hint(self, status: int) -> str:
        """What to do about a non-retryable HTTP error ``status``."""
        hints = {
            401: f"check the API key (argument api_key, ${self.api_key_env}, or `hf auth login` for Hugging Face "
            "hosts).",
            403: "the key is not allowed to use this model.",
            404: "check the model name and base_url.",
        }
        return hints.get(status, "the server rejected the request; check the sampling parameters for this server.")

    def default_headers(self, api_key: str) -> dict[str, Any]:
        """Headers of every request of a client (the openai client adds ``Authorization: Bearer <key>``). Here: drop
        its telemetry headers (``X-Stainless-*``): no server needs them, and every header is handled by four layers
        (openai, httpx2, the aiohttp adapter, aiohttp) on every request: ~7 % of the client CPU per request."""
        return dict.fromkeys(tp.TELEMETRY_HEADERS, self._openai.Omit())

    # -- construction ----------------------------------------------------------------------------------------------
    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str],
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout: float | None = None,
        max_retries: int = 6,
        supports_n: bool | None = None,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        down_after: int = 3,
        down_cooldown: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] = (),
        api_key_env: str | None = None,
        http_backend: str = "auto",
        min_timeout: float | None = None,
    ):
        label = self._label
        if not model:
            raise ValueError(f"{label} teacher: model is empty; give the served model's name.")
        if max_concurrency < 1:
            raise ValueError(f"{label} teacher: max_concurrency must be >= 1, not {max_concurrency}.")
        if max_retries < 0:
            raise ValueError(f"{label} teacher: max_retries must be >= 0, not {max_retries}.")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"{label} teacher: timeout must be > 0 seconds (or null: derived), not {timeout}.")
        if min_timeout is None:
            min_timeout = _env_seconds("FTCOT_MIN_TIMEOUT", MIN_TIMEOUT)
        if not min_timeout > 0:
            raise ValueError(f"{label} teacher: min_timeout must be > 0 seconds, not {min_timeout}.")
        if supports_n not in (None, True, False):
            raise ValueError(f"{label} teacher: supports_n must be true, false or null (auto), not {supports_n!r}.")
        if http_backend not in ("auto", "aiohttp", "httpx"):
            raise ValueError(
                f"{label} teacher: http_backend must be 'auto', 'aiohttp' or 'httpx', not {http_backend!r}."
            )
        if extra_body is not None and not isinstance(extra_body, Mapping):
            raise ValueError(f"{label} teacher: extra_body must be a JSON object (a dict), not {extra_body!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"{label} teacher: seed must be an integer or null, not {seed!r}.")
        try:
            import openai
        except ImportError as exc:
            raise TeacherError(
                f"The {label} teacher needs the `openai` package (its HTTP client): pip install 'ftcot-hf[openai]'."
            ) from exc
        self._openai = openai
        self.model = model
        self.max_concurrency = int(max_concurrency)
        self.timeout = None if timeout is None else float(timeout)
        self.min_timeout = float(min_timeout)
        self.max_retries = int(max_retries)
        self.supports_n: bool | None = supports_n if self.api_has_n else False
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.down_after = max(1, int(down_after))
        self.down_cooldown = float(down_cooldown)
        self.extra_body = dict(extra_body) if extra_body else None
        self.seed = seed
        self.stop: tuple[str, ...] = (stop,) if isinstance(stop, str) else tuple(stop)
        self.api_key_env = api_key_env or self.default_api_key_env
        self.http_backend = http_backend
        self.keep_going = False
        """A request that fails for good is yielded as a :class:`FailedRequest` (see :class:`Teacher`)."""
        self._ignores_n = False
        """Learnt from an answer (``supports_n=None``): the server ignores ``n``."""
        self._tokens_per_byte = 0.0
        """The most prompt tokens per prompt byte a reply has billed (the budget's bound of a prompt's tokens)."""
        if api_key_env and not api_key and not os.environ.get(api_key_env):
            raise ValueError(
                f"{label} teacher: api_key_env={api_key_env!r} names an environment variable that is not set: "
                "export it, or pass api_key."
            )
        self.stats: Counter[str] = Counter()
        """What happened on the wire: ``http_requests``, ``retries``, ``failovers``, ``http_429``, ``http_5xx``,
        ``timeouts``, ``connection_errors``, ``marked_down``, ``malformed`` (answers re-asked), ``failed_requests``
        (failed for good, with ``keep_going``), ``failed_billed`` (answers the server billed, its ``usage`` says, that
        could not be used: malformed, wrong ``n``, or samples of a request that then failed) with their
        ``failed_billed_prompt_tokens``/``failed_billed_completion_tokens``, ``billed_prompt_tokens``/
        ``billed_completion_tokens`` (every answer's usage), ``unsent`` (requests the budget refused)."""
        fleet_options = ("max_concurrency", "timeout", "max_retries", "backoff_base", "backoff_max", "down_after",
                         "down_cooldown", "http_backend", "api_key_env", "min_timeout")  # fmt: skip
        self._fleet = Fleet(
            base_url, openai=openai, api_key=api_key, label=label, model=model, status_hint=self.status_hint,
            stats=self.stats, **{name: getattr(self, name) for name in fleet_options},
        )  # fmt: skip
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize | None = None
        self._replies = 0
        """Answers received (the no-reply warning watches it)."""

    @classmethod
    def from_config(
        cls: type[T],
        *,
        model: str | None = None,
        base_url: str | Sequence[str] | None = None,
        tasks: Sequence[Any] = (),
        data_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> T:
        """The teacher of a teach config (the contract of every backend's ``from_config``).

        Args:
            model: the served model name (``--teacher_model``).
            base_url: the server's API root, or several (``--base_url``).
            tasks / data_dir: not used (a server serves any task); accepted because every caller passes them.
            **kwargs: the constructor's options (``max_concurrency``, ``supports_n``, ``timeout``, ``extra_body``...).

        Raises:
            ValueError: no ``model`` or no ``base_url`` (saying which flag to pass), an option the constructor does
                not take (naming the ones it takes), or an invalid value.
        """
        label = cls._class_label()
        if not model:
            raise ValueError(f"The {label} teacher needs --teacher_model: the name the server serves the model under.")
        if not base_url:
            raise ValueError(
                f"The {label} teacher needs --base_url: the server's API root, e.g. http://localhost:8000/v1 "
                "(several for a fleet)."
            )
        unknown = unknown_options(label, kwargs, list(cls.option_types() or ()))
        if unknown:
            raise ValueError(unknown)
        return cls(model, base_url, **kwargs)

    # -- public surface --------------------------------------------------------------------------------------------
    @property
    def base_urls(self) -> list[str]:
        """The fleet's base URLs (without any credentials they carried)."""
        return self._fleet.base_urls

    def counters(self) -> dict[str, int]:
        # the billed counts are there from the start: a run served wholly by the cache was billed 0, not "unknown";
        # `requests` are the HTTP requests that left the process (retries and one-per-sample requests included)
        return {"billed_prompt_tokens": 0, "billed_completion_tokens": 0, **self.stats,
                "requests": self.stats["http_requests"]}  # fmt: skip

    def live(self) -> dict[str, Any]:
        pacing = self._fleet.pacing
        return {"in_flight": pacing.in_flight, "limit": pacing.limit, "timeouts": self.stats["timeouts"],
                "retries": self.stats["retries"], "tokens_per_s": pacing.throughput}  # fmt: skip

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"backend": self.backend, "model": self.model}
        if self.extra_body:
            identity["extra_body"] = self.extra_body
        if self.seed is not None:
            identity["seed"] = self.seed
        if self.stop:
            identity["stop"] = list(self.stop)
        return identity

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.base_urls!r}, "
            f"max_concurrency={self.max_concurrency}, supports_n={self.supports_n})"
        )

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        """Yield ``(position, generations)`` for each request as soon as it completes (completion order).

        Stopping the iteration early (``break``, an exception in the caller) cancels what is still in flight; once
        every request is delivered, the call returns when the samples of failed requests still in flight are in.
        """
        requests = list(requests)
        if not requests:
            return
        loop = self._ensure_loop()
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        backlog = Backlog(loop, BACKLOG_PER_SLOT * self.max_concurrency)
        future = asyncio.run_coroutine_threadsafe(self._run(requests, results, backlog), loop)
        remaining = len(requests)
        try:
            while remaining:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # the run ended without delivering everything: a bug, but never hang on it
                    raise TeacherError(
                        f"{self._label} teacher: {remaining} request(s) of {self._where()} got no result."
                    )
                for result in item:  # a batch: every request that completed in one turn of the loop
                    remaining -= 1
                    backlog.taken()
                    yield result
            # Every request is delivered, but samples of a request that failed may still be in flight: the server
            # bills them, so they are waited for and counted (failed but billed), not cancelled with the call.
            future.result()
            while not results.empty():
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
        finally:
            if not future.done():
                future.cancel()

    def close(self) -> None:
        """Close the HTTP clients and stop the private loop (``generate`` starts a new one if called again)."""
        with self._lock:
            loop, thread, finalizer = self._loop, self._thread, self._finalizer
            self._loop = self._thread = self._finalizer = None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=10)
        except Exception as exc:  # closing must not raise over whatever the caller is doing
            logger.debug("%s teacher: closing the clients failed: %s", self._label, type(exc).__name__)
        if finalizer is not None:
            finalizer()
        if thread is not None:
            thread.join(timeout=10)
        if not thread or not thread.is_alive():
            loop.close()

    # -- the private loop ------------------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                name = f"{self._label}-teacher-{self.model}"
                thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
                thread.start()
                try:
                    asyncio.run_coroutine_threadsafe(self._setup(), loop).result()
                except BaseException:
                    tp.stop_loop(loop)
                    raise
                self._loop, self._thread = loop, thread
                self._finalizer = weakref.finalize(self, tp.stop_loop, loop)
            return self._loop

    async def _setup(self) -> None:
        await self._fleet.open(self.default_headers)

    async def _aclose(self) -> None:
        await self._fleet.aclose()

    # -- scheduling ------------------------------------------------------------------------------------------------
    def _per_sample(self) -> bool:
        """One request per sample (the server does not do ``n``, by configuration or as found out)?"""
        return self.supports_n is False or self._ignores_n

    async def _run(self, requests: list[Request], out: queue.SimpleQueue[Any], backlog: Backlog | None = None) -> None:
        """Feed ``max_concurrency`` workers from a queue of units (a request, or one sample of it when the server
        cannot do ``n``: :class:`Schedule`); report each request to ``out`` once all its samples are in. With a
        ``backlog``, a worker starts no new unit while that many answers wait for the caller (see
        :class:`Backlog`)."""
        # Results are handed to the consuming thread in batches, one per turn of the event loop: a put per result
        # wakes that thread every time, and the GIL ping-pong that follows cost ~1 ms per result at concurrency 64
        # (bench/teach_throughput.py), more than the HTTP work itself.
        loop = asyncio.get_running_loop()
        pending: list[tuple[int, list[Generation]]] = []

        def flush() -> None:
            if pending:
                out.put(pending.copy())
                pending.clear()

        def deliver(result: tuple[int, list[Generation]]) -> None:
            if not pending:
                loop.call_soon(flush)
            pending.append(result)
            if backlog is not None:
                backlog.add()

        try:
            await self._work(Schedule(self, requests, deliver), backlog, max(r.params.max_tokens for r in requests))
        except asyncio.CancelledError:
            raise  # the caller stopped iterating; nobody is listening
        except TeacherError as exc:
            flush()
            out.put(exc)
        except Exception as exc:  # never leave the caller waiting; never leak a key through an odd message
            flush()
            out.put(TeacherError(f"{self._label} teacher: unexpected {type(exc).__name__} talking to {self._where()}: "
                                 f"{self._scrub(str(exc))[:300]}"))  # fmt: skip
        finally:
            flush()
            out.put(None)

    async def _work(self, schedule: Schedule, backlog: Backlog | None, max_tokens: int) -> None:
        """Run up to ``max_concurrency`` workers of ``schedule`` until its units are done; the first error a worker
        raises stops them all and is raised here."""
        workers = min(self.max_concurrency, len(schedule.units))
        tasks = [asyncio.ensure_future(schedule.worker(backlog)) for _ in range(workers)]
        watch = asyncio.ensure_future(self._watch(max_tokens))
        try:
            if tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            watch.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(watch, *tasks, return_exceptions=True)

    async def _watch(self, max_tokens: int) -> None:
        """Warn once when no reply has come back ``min_timeout`` seconds into a call: a silent bar at 0 for minutes
        is how a server too slow for the token budget looked."""
        replies = self._replies
        await asyncio.sleep(self.min_timeout)
        if self._replies == replies and self._fleet.pacing.in_flight:
            logger.warning("%s", self._no_reply_message(max_tokens))

    def _no_reply_message(self, max_tokens: int) -> str:
        pacing = self._fleet.pacing
        message = (f"{self._label} teacher: no reply from {self._where()} in {describe_seconds(self.min_timeout)} "
                   f"({pacing.in_flight} request(s) in flight, up to {max_tokens} tokens each)")  # fmt: skip
        rate = pacing.best_rate or pacing.throughput
        if rate:
            expected = max_tokens / rate
            message += (f": the server produces {describe_rate(rate)}; a {max_tokens}-token reply takes "
                        f"{describe_seconds(expected)}")  # fmt: skip
            if pacing.in_flight > 1:
                message += f" (up to {describe_seconds(expected * pacing.in_flight)} on a one-slot server)"
        message += ". Lower --max_rationale_tokens (or --max_concurrency)"
        if self.timeout is not None:
            message += f", or raise the timeout of {self.timeout:g} s (--teacher_kwargs '{{\"timeout\": ...}}')"
        return message + "."

    def _replied(self, billed: tuple[int, int] | None, gens: Sequence[Generation], seconds: float) -> None:
        """An answer came back in ``seconds``: its tokens feed the concurrency bound and the throughput."""
        self._replies += 1
        if billed is not None:
            tokens = billed[1]
        else:  # no usage: its samples' counts, else ~4 characters a token
            tokens = sum(g.completion_tokens if g.completion_tokens is not None else len(g.text) // 4 for g in gens)
        self._fleet.pacing.replied(max(tokens, 1), seconds)

    async def _call(self, request: Request, offset: int, count: int) -> list[Generation]:
        """``count`` samples (from ``offset``) of ``request``: one HTTP request where the server does ``n``, else one
        per sample (concurrently, within the bound); a server found to ignore ``n`` is asked for the rest."""
        if count > 1 and self._per_sample():
            return await self._each_sample(request, range(offset, offset + count))
        gens = await self._call_http(request, offset, count)
        if len(gens) < count:  # it ignored n (now known): the missing samples, one request each
            rest = range(offset + len(gens), offset + count)
            gens = gens + await self._each_sample(request, rest, got=gens)
        return gens

    async def _each_sample(
        self, request: Request, indices: Sequence[int], got: Sequence[Generation] = ()
    ) -> list[Generation]:
        """Samples ``indices`` of ``request``, one HTTP request each, concurrently. The first to fail for good stops
        the others before they are sent; those already sent are waited for rather than cancelled, since the server
        bills them either way: with ``got`` (the samples already in) they are counted as failed-but-billed answers,
        so the ledger holds every answer the server billed."""
        failures: list[BaseException] = []

        async def one(j: int) -> list[Generation]:
            try:
                return await self._call_http(request, j, 1, failures)
            except BaseException as exc:
                failures.append(exc)
                raise

        results = await asyncio.gather(*(one(j) for j in indices), return_exceptions=True)
        if not failures:
            return [g for r in results for g in r]  # type: ignore[union-attr]
        self._discarded([*got, *(g for r in results if isinstance(r, list) for g in r)])
        raise next((e for e in failures if not isinstance(e, _NotSent)), failures[0])

    def _plan(self, request: Request, offset: int, count: int) -> _Plan:
        """What to ask for, for ``count`` samples from ``offset``.

        With a seed, a server's sample ``j`` of an ``n`` request is a function of (seed, j). So sample ``i`` is
        always "choice ``i`` of a seeded request" when the server does ``n`` (asking for ``i + count`` choices and
        dropping the first ``i`` when resuming at ``i > 0``), and "the request seeded ``seed + i``" when it does
        not: either way resuming a prompt never returns duplicates of the cached samples (and sample 0 is the same
        either way, so a server found to ignore ``n`` keeps the one choice it gave)."""
        params = request.params
        index = request.first_index + offset
        n, skip = count, 0
        seed = params.seed if params.seed is not None else self.seed
        if seed is not None:
            if self._per_sample():
                seed += index
            elif index > 0 and params.temperature > 0:
                n, skip = index + count, index
        stop = params.stop + tuple(s for s in self.stop if s not in params.stop)
        if seed != params.seed or stop != params.stop:
            params = dataclasses.replace(params, seed=seed, stop=stop)
        return params, n, skip

    async def _call_http(
        self, request: Request, offset: int, count: int, siblings_failed: Sequence[BaseException] = ()
    ) -> list[Generation]:
        """At most ``count`` samples (from ``offset``) of ``request`` from one HTTP request (retried and failed over
        by the fleet); fewer only when the server ignored ``n``. With ``keep_going`` a malformed answer is re-asked up
        to ``max_retries`` times (with the fleet's backoff), then fails the request (:class:`RequestFailedError`);
        without, it raises at once. Nothing more is sent once ``siblings_failed`` (the failures of the other
        samples of its request) is not empty."""
        params, n, skip = self._plan(request, offset, count)
        body = self.build_body(request, params, n)
        if self.extra_body:
            body.update(self.extra_body)
        path = self.request_path(request)
        worst = self._worst_case(request, params, n)

        def gate() -> Any:
            if siblings_failed:
                raise _NotSent("another sample of this request failed for good")
            return None if self.budget is None else self._admit(worst)

        for attempt in itertools.count():
            ep, content, seconds = await self._fleet.post(path, body, gate, params.max_tokens * n)
            billed: tuple[int, int] | None = None
            try:
                data = self._json(content)
                billed = self._bill(data, request, worst)
                gens = self._decode(data, request, params, n)
            except ResponseError as exc:
                self.stats["malformed"] += 1
                if billed is not None:  # the server billed an answer we cannot use
                    self._count_failed_billed(*billed)
                error = self._fleet.fatal(ep, exc.what, exc.hint)
                if not self.keep_going:  # a caller failing fast gets the first one (it is rarely a fluke)
                    raise error from None
                if attempt >= self.max_retries:
                    tries = f" (asked {attempt + 1} time(s))" if attempt else ""
                    raise RequestFailedError(f"{error}{tries}") from None
                delay = self._fleet.delay(attempt, None)
                self.stats["retries"] += 1
                logger.info("%s; re-asking (%d/%d) in %.2f s", error, attempt + 1, self.max_retries, delay)
                await asyncio.sleep(delay)
                continue
            self._replied(billed, gens, seconds)
            if len(gens) < n:
                self._fewer_choices(ep, len(gens), n)
            return _prompt_billed_once(gens[skip : skip + count])
        raise AssertionError("unreachable")

    # -- the budget --------------------------------------------------------------------------------------------------
    def _worst_case(self, request: Request, params: SamplingParams, n: int) -> float:
        """$ one HTTP request for ``n`` samples may cost at most (0 without a budget)."""
        if self.budget is None:
            return 0.0
        return self.budget.worst_case(self._prompt_bound(request), params.max_tokens, n)

    def _prompt_bound(self, request: Request) -> int:
        """An upper bound of the prompt's tokens, before the server has counted them: its UTF-8 bytes (a byte-level
        BPE token covers at least one byte) plus room for a chat template; once replies have shown how many tokens
        a byte makes here, that ratio with a 25 % margin, capped by the byte bound."""
        size = len(request.prompt.encode())
        bound = size + (CHAT_TEMPLATE_TOKENS if request.chat else 0)
        if self._tokens_per_byte:
            bound = min(bound, int(size * self._tokens_per_byte * 1.25) + CHAT_TEMPLATE_TOKENS)
        return bound

    def _admit(self, worst: float) -> Any:
        """The fleet's gate before each HTTP request: raises :class:`BudgetExhaustedError` when the budget refuses
        it, else returns what ends its hold once its reply is in."""
        budget = self.budget
        assert budget is not None
        if not budget.admit(worst):
            raise budget.refusal().error
        return lambda: budget.release(worst)

    def _json(self, content: bytes) -> Any:
        """A 200 answer decoded; :class:`ResponseError` when it is not JSON."""
        try:
            return json.loads(content)
        except ValueError:
            snippet = self._scrub(content[:4096].decode("utf-8", "replace"))[:120]  # scrubbed before it is cut
            raise ResponseError(f"the response is not valid JSON (starts {snippet!r})", self.base_url_hint) from None

    def _bill(self, data: Any, request: Request, worst: float = 0.0) -> tuple[int, int] | None:
        """Count what the server billed for an answer (and charge the budget: the usage, or the request's worst case
        when the answer says nothing of it); returns the usage."""
        billed = self.usage(data)
        if billed is not None:
            self.stats["billed_prompt_tokens"] += billed[0]
            self.stats["billed_completion_tokens"] += billed[1]
            size = len(request.prompt.encode())
            if size and billed[0]:
                self._tokens_per_byte = max(self._tokens_per_byte, billed[0] / size)
        if self.budget is not None:
            if billed is not None:
                self.budget.charge(*billed)
            else:
                self.budget.cost += worst
        return billed

    def _count_failed_billed(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.stats["failed_billed"] += 1
        self.stats["failed_billed_prompt_tokens"] += prompt_tokens
        self.stats["failed_billed_completion_tokens"] += completion_tokens

    def _discarded(self, gens: Any) -> None:
        """Samples that came back (billed) for a request that then failed for good: each a failed-but-billed
        answer (one request per sample, so each carries its own usage)."""
        for g in gens:
            self._count_failed_billed(g.prompt_tokens or 0, g.completion_tokens or 0)

    def _decode(self, data: Any, request: Request, params: SamplingParams, n: int) -> list[Generation]:
        """The choices of a decoded 200 answer; :class:`ResponseError` when it is malformed (rejected by
        ``parse_response``, or fewer choices than ``n`` with ``supports_n=True``)."""
        gens = self.parse_response(data, request, params)
        if len(gens) < n and self.supports_n:
            hint = "this server seems to ignore `n`; pass supports_n=False to send one request per sample."
            raise ResponseError(f"the response has {len(gens)} choice(s) for n={n}", hint)
        return gens

    def _fewer_choices(self, ep: Endpoint, got: int, n: int) -> None:
        """An answer with ``got`` < ``n`` choices (``supports_n=None``: ``True`` makes it malformed): the server
        ignores ``n``: say so once, and send one request per sample from now on."""
        if not self._ignores_n:
            self._ignores_n = True
            logger.warning(
                "%s teacher: %s (model %r) returned %d choice(s) for n=%d: it ignores `n`; sending one request per "
                "sample from now on (pass supports_n=False to do so from the start).",
                self._label, ep.display, self.model, got, n,
            )  # fmt: skip

    # -- messages --------------------------------------------------------------------------------------------------
    @classmethod
    def _class_label(cls) -> str:
        return cls.backend or cls.__name__

    @property
    def _label(self) -> str:
        """How messages name this teacher: its backend name (``openai``)."""
        return self._class_label()

    def _where(self) -> str:
        return self._fleet.where()

    def _scrub(self, text: str) -> str:
        """``text`` with every API key in use replaced by ``***`` (a server may echo what it was sent)."""
        return self._fleet.scrub(text)
