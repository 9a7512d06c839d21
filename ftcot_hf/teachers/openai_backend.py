"""The ``openai`` teacher: any OpenAI-compatible endpoint (``vllm serve``, TGI, llama.cpp server, OpenAI, HF
Inference Providers), through the official ``openai`` client.

Why it looks the way it does:

* Teaching a dataset means tens of thousands of independent requests whose latency is the server's, so the
  throughput comes from keeping ``max_concurrency`` requests in flight (a vLLM server batches them), not from
  batching prompts into one request. An asyncio loop in a private thread drives ``AsyncOpenAI``; results reach the
  caller's (synchronous) :meth:`OpenAITeacher.generate` through a queue *as each request completes*, so the
  request cache stores each one at once and a crash loses only what was in flight. The loop lives in its own thread
  so ``generate`` also works where an event loop is already running (Jupyter) and so requests keep flowing while
  the caller is busy with a result.
* That loop's CPU per request (the openai client, httpx2, aiohttp: ~0.6 ms) caps one process at ~1,500 requests/s,
  which a fast server at high concurrency can exceed; ``processes=N`` runs N such loops in worker processes (spawned
  once, reused), each with a share of ``max_concurrency`` and its own clients, and streams their results back over
  pipes in the same per-loop-turn batches. Retries, fail-over and stats happen inside each worker (stats are merged
  into the parent's :attr:`OpenAITeacher.stats` at the end of each call); a fleet's "down" marks are per worker.
* Our retry loop is the only one (the client gets ``max_retries=0``): it can fail over to another server of a
  fleet, honour ``Retry-After``, count what it did (:attr:`OpenAITeacher.stats`), and give a clean error.
  Retried: 408, 409, 429, 5xx, timeouts, connection errors. Not retried (a retry cannot fix them): other 4xx, and a
  *malformed* 200 response (not JSON, no/empty ``choices``, fewer choices than ``n``), which almost always means
  the ``base_url`` is not an OpenAI-compatible endpoint or the server ignores ``n``.
* Errors name the (credential-free) base URL and the model, and never contain the API key.
* ``identity()`` is backend + model (+ ``extra_body`` when set), never the URLs: a fleet serving one model shares
  the cache, and moving a server to another port does not invalidate it.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import itertools
import json
import logging
import math
import os
import queue
import random
import re
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ftcot_hf.teachers.base import Generation, Request, Teacher, TeacherError, register_teacher

logger = logging.getLogger(__name__)

_LENGTH_REASONS = frozenset({"length", "max_tokens", "max_length", "model_length", "max_output_tokens"})
_HF_HOST_SUFFIXES = ("huggingface.co", "hf.co", "huggingface.cloud", "hf.space")
_MAX_RETRY_AFTER = 300.0
"""A server asking for a longer pause than this gets this (a teaching run should not sleep for hours)."""
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_TELEMETRY_HEADERS = (
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Async",
)


@dataclass(eq=False)
class _Retryable(Exception):
    """An attempt failed in a way another attempt (maybe on another server) can fix."""

    message: str
    retry_after: float | None = None
    connect_failed: bool = False
    """Nothing answered at that address: mark the server down at once."""
    server_fault: bool = True
    """Counts towards marking the server down (a 429 does not: the server is alive, just busy)."""


@dataclass
class _Endpoint:
    """One server of the fleet, with the state the scheduler needs."""

    index: int
    url: str
    display: str
    api_key: str
    client: Any = None
    in_flight: int = 0
    failures: int = 0
    """Consecutive server-side failures (reset by a success)."""
    down_until: float = 0.0
    served: int = 0


def _display_url(url: str) -> str:
    """``url`` without ``user:password@`` (a URL may carry credentials; messages and logs must not)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _is_hf_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == s or host.endswith("." + s) for s in _HF_HOST_SUFFIXES)


def _resolve_api_key(api_key: str | None, url: str) -> str:
    """The argument, else ``$OPENAI_API_KEY``, else the Hugging Face token (only for Hugging Face hosts: a user's
    HF token must not be sent to an arbitrary server), else ``"EMPTY"`` (what a local vLLM server accepts)."""
    if api_key:
        return api_key
    if os.environ.get("OPENAI_API_KEY"):
        return os.environ["OPENAI_API_KEY"]
    if _is_hf_host(url):
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # an unreadable token file must not break teaching; the server will say 401
            token = None
        if token:
            return token
    return "EMPTY"


def _split_urls(base_url: str | Sequence[str]) -> list[str]:
    urls = re.split(r"[,\s]+", base_url) if isinstance(base_url, str) else list(base_url)
    urls = [u.strip().rstrip("/") for u in urls if u and u.strip()]
    if not urls:
        raise ValueError("openai teacher: base_url is empty; give the server's URL, e.g. http://localhost:8000/v1")
    return urls


def _parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            seconds = when.timestamp() - time.time()
        if math.isfinite(seconds):
            return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
    return None


def _is_connect_failure(exc: BaseException) -> bool:
    """Did nothing answer at all (refused, unreachable)? Walks the cause chain because transports wrap (and the
    aiohttp one even reports a refused connection as a *timeout*)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
            return True
        if type(e).__name__ in ("ConnectError", "ClientConnectorError"):
            return True
        e = e.__cause__ or e.__context__
    return False


def _is_timeout(exc: BaseException) -> bool:
    """Did the server take too long (rather than drop the connection)? The aiohttp transport reports both as a
    timeout, so look for an actual ``TimeoutError`` in the cause chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def _finish_reason(raw: Any, completion_tokens: int | None, max_tokens: int) -> str:
    """Map a server's finish reason onto ``"stop"`` / ``"length"``: ``length``-like reasons (vLLM, TGI, llama.cpp
    and OpenAI spellings) are ``"length"``; a missing one is ``"length"`` only when the exact token count shows
    the budget was used up; anything else (``stop``, ``eos``, ``content_filter``, ``tool_calls``) ended the text."""
    if isinstance(raw, str):
        if raw.lower() in _LENGTH_REASONS:
            return "length"
        if raw.lower() not in ("stop", "eos", "eos_token", "stop_sequence", "end_turn"):
            logger.debug("openai teacher: unusual finish_reason %r recorded as 'stop'", raw)
        return "stop"
    if completion_tokens is not None and completion_tokens >= max_tokens:
        return "length"
    return "stop"


def _http_response_type(openai: Any) -> type:
    """The HTTP response class of the installed client (``httpx2`` for openai >= 3, ``httpx`` before): passed as
    ``cast_to`` it makes ``client.post`` return the raw response."""
    if hasattr(openai, "DefaultAsyncHttpx2Client"):
        import httpx2

        return httpx2.Response
    import httpx

    return httpx.Response


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Finalizer of an abandoned teacher: stop its loop so the private thread ends (never blocks)."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


@register_teacher("openai")
class OpenAITeacher(Teacher):
    """A teacher behind one or more OpenAI-compatible servers.

    Args:
        model: the served model name (``vllm serve <model>``'s name, ``gpt-4o-mini``, ``meta-llama/...:provider``).
        base_url: the API root, ending in ``/v1`` (e.g. ``http://localhost:8000/v1``); several (a list, or one
            comma-separated string) form a fleet: requests go to the least busy live server, and a dead one is
            skipped for ``down_cooldown`` seconds.
        api_key: else ``$OPENAI_API_KEY``, else the HF token for Hugging Face hosts, else ``"EMPTY"``.
        max_concurrency: HTTP requests in flight at most (for the whole teacher, across the fleet).
        timeout: seconds per HTTP request.
        max_retries: backoff rounds per request after the first try; each round tries every live server once, so
            a request makes at most ``(max_retries + 1) * len(base_url)`` attempts.
        supports_n: the server returns ``n`` choices per request (vLLM, OpenAI); else ``n`` requests are sent.
        backoff_base, backoff_max: exponential backoff ``min(backoff_max, backoff_base * 2**k)``, jittered to
            50-100 % of that; a ``Retry-After`` header (seconds) replaces it (plus up to 10 %).
        down_after: consecutive 5xx/timeouts that mark a server down (a refused connection marks it at once).
        down_cooldown: seconds a down server is skipped before being tried again.
        extra_body: extra JSON fields for every request (vLLM's ``top_k``, ``repetition_penalty``...); part of
            ``identity()`` since they change the output.
        http_backend: ``"aiohttp"`` (the openai client's aiohttp transport: about half the client CPU per request
            of the default in ``bench/teach_throughput.py``, which bounds throughput at high concurrency),
            ``"httpx"`` (the client's default), or ``"auto"`` (aiohttp when the installed ``openai`` provides it).
        processes: worker processes doing the HTTP work, each with its own event loop and clients and a share of
            ``max_concurrency``; results stream back to ``generate`` as they complete. The client's CPU per request
            (~0.7 ms) caps one process at ~1,400 requests/s, so at high concurrency against a fast server more
            processes keep more requests in flight. ``"auto"``: one per CPU (at most 4) when ``max_concurrency``
            >= 32, else 1. Workers are started (``spawn``: safe with torch loaded) on the first ``generate`` and
            reused until :meth:`close`; a script using them needs the usual ``if __name__ == "__main__":`` guard.
    """

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str],
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 60.0,
        max_retries: int = 6,
        supports_n: bool = True,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        down_after: int = 3,
        down_cooldown: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        http_backend: str = "auto",
        processes: int | str = 1,
    ):
        if not model:
            raise ValueError("openai teacher: model is empty; give the served model's name.")
        if max_concurrency < 1:
            raise ValueError(f"openai teacher: max_concurrency must be >= 1, not {max_concurrency}.")
        if max_retries < 0:
            raise ValueError(f"openai teacher: max_retries must be >= 0, not {max_retries}.")
        if not timeout > 0:
            raise ValueError(f"openai teacher: timeout must be > 0 seconds, not {timeout}.")
        if http_backend not in ("auto", "aiohttp", "httpx"):
            raise ValueError(
                f"openai teacher: http_backend must be 'auto', 'aiohttp' or 'httpx', not {http_backend!r}."
            )
        if processes == "auto":
            processes = min(os.cpu_count() or 1, 4) if max_concurrency >= 32 else 1
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"openai teacher: processes must be an integer >= 1 or 'auto', not {processes!r}.")
        try:
            import openai
        except ImportError as exc:
            raise TeacherError(
                "The openai teacher needs the `openai` package: pip install 'ftcot-hf[openai]'."
            ) from exc
        self._openai = openai
        self._response_type = _http_response_type(openai)
        self.model = model
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.supports_n = bool(supports_n)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.down_after = max(1, int(down_after))
        self.down_cooldown = float(down_cooldown)
        self.extra_body = dict(extra_body) if extra_body else None
        self.http_backend = http_backend
        self.processes = min(processes, self.max_concurrency)  # a worker with no share of the bound does nothing
        self._workers: _WorkerPool | None = None
        # per-request headers the client adds unless the request itself omits them (see _header_overrides)
        omit = openai.Omit()
        self._options: dict[str, Any] = {
            "headers": {"x-stainless-retry-count": omit, "x-stainless-read-timeout": omit}
        }
        self._endpoints = [
            _Endpoint(i, url, _display_url(url), _resolve_api_key(api_key, url))
            for i, url in enumerate(_split_urls(base_url))
        ]
        self._secrets = sorted({e.api_key for e in self._endpoints if len(e.api_key) >= 4} - {"EMPTY"}, key=len)[::-1]
        self._rr = itertools.count()
        self.stats: Counter[str] = Counter()
        """What happened on the wire: ``http_requests``, ``retries``, ``failovers``, ``http_429``, ``http_5xx``,
        ``timeouts``, ``connection_errors``, ``marked_down``."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize | None = None
        self._semaphore: asyncio.Semaphore | None = None

    # -- public surface --------------------------------------------------------------------------------------------
    @property
    def base_urls(self) -> list[str]:
        """The fleet's base URLs (without any credentials they carried)."""
        return [e.display for e in self._endpoints]

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"backend": self.backend, "model": self.model}
        if self.extra_body:
            identity["extra_body"] = self.extra_body
        return identity

    def __repr__(self) -> str:
        return (
            f"OpenAITeacher(model={self.model!r}, base_url={self.base_urls!r}, "
            f"max_concurrency={self.max_concurrency}, supports_n={self.supports_n})"
        )

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        """Yield ``(position, generations)`` for each request as soon as it completes (completion order).

        Stopping the iteration early (``break``, an exception in the caller) cancels what is still in flight.
        """
        requests = list(requests)
        if not requests:
            return
        if self.processes > 1:
            yield from self._pool().generate(requests)
            return
        loop = self._ensure_loop()
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        future = asyncio.run_coroutine_threadsafe(self._run(requests, results), loop)
        remaining = len(requests)
        try:
            while remaining:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # the run ended without delivering everything: a bug, but never hang on it
                    raise TeacherError(f"openai teacher: {remaining} request(s) of {self._where()} got no result.")
                for result in item:  # a batch: every request that completed in one turn of the loop
                    remaining -= 1
                    yield result
        finally:
            if not future.done():
                future.cancel()

    def close(self) -> None:
        """Close the HTTP clients and stop the private loop and the worker processes (``generate`` starts new ones
        if called again)."""
        with self._lock:
            loop, thread, finalizer = self._loop, self._thread, self._finalizer
            self._loop = self._thread = self._finalizer = None
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=10)
        except Exception as exc:  # closing must not raise over whatever the caller is doing
            logger.debug("openai teacher: closing the clients failed: %s", type(exc).__name__)
        if finalizer is not None:
            finalizer()
        if thread is not None:
            thread.join(timeout=10)
        if not thread or not thread.is_alive():
            loop.close()

    # -- worker processes ------------------------------------------------------------------------------------------
    def _pool(self) -> _WorkerPool:
        with self._lock:
            if self._workers is not None and self._workers.broken:
                self._workers.close()
                self._workers = None
            if self._workers is None:
                n = self.processes
                shares = [self.max_concurrency // n + (1 if i < self.max_concurrency % n else 0) for i in range(n)]
                self._workers = _WorkerPool(self, [self._worker_spec(share) for share in shares])
            return self._workers

    def _worker_spec(self, max_concurrency: int) -> dict[str, Any]:
        """What a worker needs to rebuild this teacher (single-process) with its share of the bound. The keys
        travel through the process pipe, never through the command line or a log."""
        return {
            "model": self.model,
            "base_url": [e.url for e in self._endpoints],
            "api_keys": [e.api_key for e in self._endpoints],
            "max_concurrency": max_concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "supports_n": self.supports_n,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "down_after": self.down_after,
            "down_cooldown": self.down_cooldown,
            "extra_body": self.extra_body,
            "http_backend": self.http_backend,
        }

    # -- the private loop ------------------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"openai-teacher-{self.model}", daemon=True)
                thread.start()
                try:
                    asyncio.run_coroutine_threadsafe(self._setup(), loop).result()
                except BaseException:
                    _stop_loop(loop)
                    raise
                self._loop, self._thread = loop, thread
                self._finalizer = weakref.finalize(self, _stop_loop, loop)
            return self._loop

    async def _setup(self) -> None:
        """Create the clients inside the loop they will run on (aiohttp sessions are bound to their loop)."""
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        for ep in self._endpoints:
            ep.client = self._openai.AsyncOpenAI(
                base_url=ep.url,
                api_key=ep.api_key,
                max_retries=0,  # our retries are the only ones, so they are counted and can fail over
                timeout=self.timeout,
                http_client=self._http_client(),
                default_headers=self._header_overrides(),
            )

    def _header_overrides(self) -> dict[str, Any]:
        """Drop the client's telemetry headers (``X-Stainless-*``: OS, arch, runtime, retry count...): no server
        needs them, and every header is handled by four layers (openai, httpx2, the aiohttp adapter, aiohttp) on
        every request: dropping them saves ~7 % of the client CPU per request in ``bench/teach_throughput.py``."""
        omit = self._openai.Omit()
        return dict.fromkeys(_TELEMETRY_HEADERS, omit)

    def _http_client(self) -> Any:
        """The transport (None = the client's default). Pool size follows ``max_concurrency`` so the bound is ours."""
        openai = self._openai
        limits_type = type(getattr(openai, "DEFAULT_CONNECTION_LIMITS", None))
        kwargs: dict[str, Any] = {"timeout": self.timeout}
        if limits_type is not type(None):
            size = max(self.max_concurrency, 1)
            kwargs["limits"] = limits_type(max_connections=size, max_keepalive_connections=size)
        if self.http_backend in ("auto", "aiohttp") and hasattr(openai, "DefaultAioHttpClient"):
            try:
                return openai.DefaultAioHttpClient(**kwargs)
            except (RuntimeError, ImportError) as exc:  # the aiohttp extra is not installed
                if self.http_backend == "aiohttp":
                    raise TeacherError(f"openai teacher: the aiohttp transport is unavailable ({exc}).") from None
        elif self.http_backend == "aiohttp":
            raise TeacherError(
                "openai teacher: this `openai` version has no aiohttp transport (DefaultAioHttpClient)."
            )
        if hasattr(openai, "DefaultAsyncHttpxClient"):
            return openai.DefaultAsyncHttpxClient(**kwargs)
        return None

    async def _aclose(self) -> None:
        for ep in self._endpoints:
            if ep.client is not None:
                await ep.client.close()
                ep.client = None

    # -- scheduling ------------------------------------------------------------------------------------------------
    async def _run(self, requests: list[Request], out: queue.SimpleQueue[Any]) -> None:
        """Feed ``max_concurrency`` workers from a queue of units (a request, or one sample of it when the server
        cannot do ``n``); report each request to ``out`` once all its samples are in."""
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

        try:
            units: deque[tuple[int, int, int]] = deque()  # (position, first sample offset, sample count)
            for pos, request in enumerate(requests):
                if request.n <= 0:
                    deliver((pos, []))
                elif self.supports_n or request.n == 1:
                    units.append((pos, 0, request.n))
                else:
                    units.extend((pos, j, 1) for j in range(request.n))
            partial: dict[int, list[Generation | None]] = {}

            async def worker() -> None:
                while units:
                    pos, offset, count = units.popleft()
                    request = requests[pos]
                    gens = await self._call(request, offset, count)
                    if count == request.n:
                        deliver((pos, gens))
                        continue
                    slots = partial.setdefault(pos, [None] * request.n)
                    slots[offset : offset + count] = gens
                    if all(g is not None for g in slots):
                        del partial[pos]
                        deliver((pos, slots))  # type: ignore[arg-type]

            tasks = [asyncio.ensure_future(worker()) for _ in range(min(self.max_concurrency, len(units)))]
            try:
                if tasks:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                    for task in done:
                        if task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            raise  # the caller stopped iterating; nobody is listening
        except TeacherError as exc:
            flush()
            out.put(exc)
        except Exception as exc:  # never leave the caller waiting; never leak a key through an odd message
            flush()
            out.put(TeacherError(f"openai teacher: unexpected {type(exc).__name__} talking to {self._where()}: "
                                 f"{self._scrub(str(exc))[:300]}"))  # fmt: skip
        finally:
            flush()
            out.put(None)

    def _pick(self, tried: set[int]) -> _Endpoint | None:
        """The live, untried server with the fewest requests in flight (ties: round-robin)."""
        now = time.monotonic()
        live = [e for e in self._endpoints if e.index not in tried and e.down_until <= now]
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        start, size = next(self._rr), len(self._endpoints)
        return min(live, key=lambda e: (e.in_flight, (e.index - start) % size))

    async def _call(self, request: Request, offset: int, count: int) -> list[Generation]:
        """``count`` samples (from ``offset``) of ``request``, retrying and failing over until it works or the
        retries are spent."""
        body, skip = self._request_body(request, offset, count)
        round_ = 0
        tried: set[int] = set()
        last: _Retryable | None = None
        while True:
            ep = self._pick(tried)
            if ep is None and not tried:  # every server is cooling down: probe the one back soonest
                ep = min(self._endpoints, key=lambda e: e.down_until)
            if ep is None:  # every live server failed this round: back off
                assert last is not None
                if round_ >= self.max_retries:
                    raise TeacherError(
                        f"openai teacher: gave up on model {self.model!r} after {round_ + 1} round(s) of attempts on "
                        f"{self._where()}; last error: {last.message}"
                    )
                delay = self._delay(round_, last.retry_after)
                round_ += 1
                self.stats["retries"] += 1
                logger.info("openai teacher: %s; retry %d/%d in %.2f s", last.message, round_, self.max_retries, delay)
                await asyncio.sleep(delay)
                tried.clear()
                continue
            if tried:
                self.stats["failovers"] += 1
            tried.add(ep.index)
            assert self._semaphore is not None
            try:
                async with self._semaphore:
                    ep.in_flight += 1
                    try:
                        gens = await self._attempt(ep, request, body, count, skip)
                    finally:
                        ep.in_flight -= 1
            except _Retryable as exc:
                last = exc
                self._note_failure(ep, exc)
                continue
            ep.failures, ep.down_until = 0, 0.0
            ep.served += 1
            return gens

    def _request_body(self, request: Request, offset: int, count: int) -> tuple[dict[str, Any], int]:
        """The JSON body, and how many leading choices of the answer to drop.

        With a seed, a server's sample ``j`` of an ``n`` request is a function of (seed, j). So sample ``i`` is
        always "choice ``i`` of a seeded request" when the server does ``n`` (asking for ``i + count`` choices and
        dropping the first ``i`` when resuming at ``i > 0``), and "the request seeded ``seed + i``" when it does
        not: either way resuming a prompt never returns duplicates of the cached samples."""
        params = request.params
        index = request.first_index + offset
        n, skip, seed = count, 0, params.seed
        if seed is not None:
            if not self.supports_n:
                seed += index
            elif index > 0 and params.temperature > 0:
                n, skip = index + count, index
        body: dict[str, Any] = {"model": self.model}
        if request.chat:
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        body.update(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p)
        if n != 1:
            body["n"] = n
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if self.extra_body:
            body.update(self.extra_body)
        return body, skip

    def _delay(self, round_: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after * (1.0 + 0.1 * random.random())  # never earlier than asked
        cap = min(self.backoff_max, self.backoff_base * 2**round_)
        return cap * (0.5 + 0.5 * random.random())

    def _note_failure(self, ep: _Endpoint, exc: _Retryable) -> None:
        if exc.connect_failed or (exc.server_fault and ep.failures + 1 >= self.down_after):
            if ep.down_until <= time.monotonic() and len(self._endpoints) > 1:
                self.stats["marked_down"] += 1
                logger.warning(
                    "openai teacher: %s marked down for %.0f s (%s)", ep.display, self.down_cooldown, exc.message
                )
            ep.down_until = time.monotonic() + self.down_cooldown
        if exc.server_fault:
            ep.failures += 1

    # -- one HTTP request ------------------------------------------------------------------------------------------
    async def _attempt(
        self, ep: _Endpoint, request: Request, body: dict[str, Any], count: int, skip: int
    ) -> list[Generation]:
        """One HTTP request. Through the client's generic ``post`` (its documented way to send a body as is, with
        its auth, headers and errors) rather than ``completions.create``: that skips the typed-parameter transform,
        about a sixth of the client's CPU per request, which is what bounds throughput at high concurrency; and
        the raw bytes come back, so a malformed answer is ours to diagnose."""
        openai = self._openai
        self.stats["http_requests"] += 1
        path = "/chat/completions" if request.chat else "/completions"
        try:
            response = await ep.client.post(path, body=body, cast_to=self._response_type, options=self._options)
            content = response.content
        except openai.APIStatusError as exc:
            raise self._status_error(ep, exc) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            if _is_connect_failure(exc):
                self.stats["connection_errors"] += 1
                raise _Retryable(f"cannot connect to {ep.display}", connect_failed=True) from None
            if _is_timeout(exc):
                self.stats["timeouts"] += 1
                raise _Retryable(f"{ep.display} timed out after {self.timeout:g} s") from None
            self.stats["connection_errors"] += 1
            raise _Retryable(f"connection to {ep.display} failed ({self._scrub(str(exc))[:120]})") from None
        return self._parse(ep, request, content, body, count, skip)

    def _status_error(self, ep: _Endpoint, exc: Any) -> Exception:
        status = int(getattr(exc, "status_code", 0) or 0)
        body = getattr(exc, "body", None)
        detail = body.get("message") if isinstance(body, dict) else None
        detail = self._scrub(str(detail if detail else getattr(exc, "message", "") or body or ""))[:300]
        if status in _RETRYABLE_STATUS or status >= 500:
            self.stats["http_429" if status == 429 else "http_5xx" if status >= 500 else f"http_{status}"] += 1
            response = getattr(exc, "response", None)
            retry_after = _parse_retry_after(getattr(response, "headers", None))
            return _Retryable(f"HTTP {status} from {ep.display}: {detail}", retry_after, server_fault=status != 429)
        hints = {
            401: "check the API key (argument api_key, $OPENAI_API_KEY, or `hf auth login` for Hugging Face hosts).",
            403: "the key is not allowed to use this model.",
            404: "check the model name and that base_url is the API root ending in /v1 (e.g. http://host:8000/v1).",
        }
        hint = hints.get(status, "the server rejected the request; check the sampling parameters for this server.")
        return self._fatal(ep, f"HTTP {status}: {detail}", hint)

    def _parse(
        self, ep: _Endpoint, request: Request, content: bytes, body: dict[str, Any], count: int, skip: int
    ) -> list[Generation]:
        hint_url = "is base_url an OpenAI-compatible API root (ending in /v1)?"
        try:
            data = json.loads(content)
        except ValueError:
            snippet = self._scrub(content[:120].decode("utf-8", "replace"))
            raise self._fatal(ep, f"the response is not valid JSON (starts {snippet!r})", hint_url) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list):
            error = data.get("error") if isinstance(data, dict) else None
            if error:
                message = error.get("message", error) if isinstance(error, dict) else error
                raise self._fatal(ep, f"the server answered with an error: {self._scrub(str(message))[:300]}", "")
            raise self._fatal(ep, "the response has no 'choices' list", hint_url)
        wanted = body.get("n", 1)
        if not choices:
            raise self._fatal(ep, "the response has an empty 'choices' list", "")
        if len(choices) < wanted:
            raise self._fatal(
                ep,
                f"the response has {len(choices)} choice(s) for n={wanted}",
                "this server seems to ignore `n`; pass supports_n=False to send one request per sample.",
            )
        if all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in choices):
            choices = sorted(choices, key=lambda c: c["index"])
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None
        total = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
        k = len(choices)
        gens: list[Generation] = []
        for i, choice in enumerate(choices):
            if i < skip or len(gens) == count:
                continue
            text = self._choice_text(ep, choice, request.chat)
            # usage counts all choices together: split evenly (exact for n=1; sums to the server's total).
            tokens = None if total is None else total // k + (1 if i < total % k else 0)
            reason = _finish_reason(choice.get("finish_reason"), tokens if k == 1 else None, body["max_tokens"])
            gens.append(Generation(text, reason, prompt_tokens, tokens))
        return gens

    def _choice_text(self, ep: _Endpoint, choice: Any, chat: bool) -> str:
        if isinstance(choice, dict):
            if chat and isinstance(choice.get("message"), dict):
                return choice["message"].get("content") or ""  # None: a refusal or tool call, no text
            if not chat and "text" in choice:
                return choice["text"] or ""
        kind = "a 'message'" if chat else "a 'text'"
        raise self._fatal(ep, f"a choice has no {kind} field: {self._scrub(repr(choice))[:200]}", "")

    # -- messages --------------------------------------------------------------------------------------------------
    def _where(self) -> str:
        urls = self.base_urls
        return urls[0] if len(urls) == 1 else f"[{', '.join(urls)}]"

    def _fatal(self, ep: _Endpoint, what: str, hint: str) -> TeacherError:
        message = f"openai teacher: {ep.display} (model {self.model!r}): {what}."
        return TeacherError(f"{message} {hint}".strip())

    def _scrub(self, text: str) -> str:
        """``text`` with every API key in use replaced by ``***`` (a server may echo what it was sent)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


# -- worker processes ----------------------------------------------------------------------------------------------
# Protocol (parent -> worker): ("job", job_id, requests) | ("cancel", job_id) | ("close",).
# Worker -> parent: ("ready", None) | ("setup_error", message) | ("results", job_id, [(local position, gens)...])
# (one message per event-loop turn, like the single-process hand-off) | ("error", job_id, message) |
# ("done", job_id, stats) (always last for a job, also after a cancel).


class _PipeOut:
    """What ``OpenAITeacher._run`` puts results into, in a worker: each put becomes one message to the parent."""

    def __init__(self, conn: Any, job_id: int, teacher: OpenAITeacher):
        self.conn, self.job_id, self.teacher = conn, job_id, teacher
        self.done = False

    def put(self, item: Any) -> None:
        if item is None:
            self.done = True
            stats = dict(self.teacher.stats)
            self.teacher.stats.clear()
            self.conn.send(("done", self.job_id, stats))
        elif isinstance(item, BaseException):
            self.conn.send(("error", self.job_id, str(item)))
        else:
            self.conn.send(("results", self.job_id, item))


def _worker_main(conn: Any, spec: dict[str, Any]) -> None:
    """A worker process: one single-process teacher driven by the parent's messages on ``conn``."""
    spec = dict(spec)
    keys = spec.pop("api_keys")
    try:
        teacher = OpenAITeacher(**spec, api_key="EMPTY")
        for ep, key in zip(teacher._endpoints, keys, strict=True):
            ep.api_key = key
        teacher._secrets = sorted({k for k in keys if len(k) >= 4} - {"EMPTY"}, key=len)[::-1]
    except Exception as exc:
        conn.send(("setup_error", f"openai teacher worker: {type(exc).__name__}: {exc}"))
        return
    try:
        asyncio.run(_worker_loop(conn, teacher))
    except KeyboardInterrupt:  # the parent's Ctrl-C reaches the whole process group; the parent reports it
        pass


async def _worker_loop(conn: Any, teacher: OpenAITeacher) -> None:
    loop = asyncio.get_running_loop()
    try:
        await teacher._setup()
    except Exception as exc:
        conn.send(("setup_error", str(exc)))
        return
    conn.send(("ready", None))
    stop = loop.create_future()
    jobs: dict[int, asyncio.Task[None]] = {}

    def finished(job_id: int, out: _PipeOut) -> None:
        jobs.pop(job_id, None)
        if not out.done:  # cancelled before it started: the parent still waits for the job's "done"
            out.put(None)

    def on_message() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "job":
                    job_id, requests = message[1], message[2]
                    out = _PipeOut(conn, job_id, teacher)
                    task = loop.create_task(teacher._run(requests, out))
                    jobs[job_id] = task
                    task.add_done_callback(lambda _, j=job_id, o=out: finished(j, o))
                elif message[0] == "cancel":
                    task = jobs.get(message[1])
                    if task is not None:
                        task.cancel()
                elif message[0] == "close" and not stop.done():
                    stop.set_result(None)
        except (EOFError, OSError):  # the parent is gone
            if not stop.done():
                stop.set_result(None)

    loop.add_reader(conn.fileno(), on_message)
    try:
        await stop
    finally:
        loop.remove_reader(conn.fileno())
        for task in list(jobs.values()):
            task.cancel()
        await asyncio.gather(*jobs.values(), return_exceptions=True)
        await teacher._aclose()


class _WorkerPool:
    """The parent's side: start the workers, split each ``generate`` call among them, merge what comes back."""

    def __init__(self, teacher: OpenAITeacher, specs: list[dict[str, Any]]):
        import multiprocessing

        self.teacher = teacher
        self.broken = False
        """A worker died: the pool cannot serve another call (the teacher starts a new one)."""
        self._jobs = itertools.count()
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads (torch, our loop) in the parent
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        try:
            for i, spec in enumerate(specs):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main, args=(child_end, spec), name=f"openai-teacher-{i}", daemon=True
                )
                proc.start()
                child_end.close()
                self.conns.append(parent_end)
                self.procs.append(proc)
            for i in range(len(self.conns)):
                message = self._recv(i)
                if message[0] != "ready":
                    raise TeacherError(f"openai teacher: worker process {i} failed to start: {message[1]}")
        except BaseException:
            self.close()
            raise

    def _recv(self, i: int) -> Any:
        try:
            return self.conns[i].recv()
        except (EOFError, OSError):
            self.broken = True
            self.procs[i].join(timeout=1)
            code = self.procs[i].exitcode
            raise TeacherError(
                f"openai teacher: worker process {i} exited unexpectedly (exit code {code}) while talking to "
                f"{self.teacher._where()}."
            ) from None

    def generate(self, requests: list[Request]) -> Iterator[tuple[int, list[Generation]]]:
        from multiprocessing.connection import wait

        job_id = next(self._jobs)
        n = len(self.conns)
        # round-robin: equal shares, and the early positions (which a resumed run wants first) spread over all
        positions = [list(range(i, len(requests), n)) for i in range(n)]
        active = {i for i in range(n) if positions[i]}
        for i in active:
            self.conns[i].send(("job", job_id, [requests[p] for p in positions[i]]))
        by_conn = {id(self.conns[i]): i for i in range(n)}
        error: str | None = None
        try:
            while active:
                for conn in wait([self.conns[i] for i in active]):
                    i = by_conn[id(conn)]
                    message = self._recv(i)
                    kind = message[0]
                    if kind == "results" and message[1] == job_id:
                        index = positions[i]
                        for local, gens in message[2]:
                            yield index[local], gens
                    elif kind == "error" and message[1] == job_id:
                        error = error or message[2]
                    elif kind == "done" and message[1] == job_id:
                        self.teacher.stats.update(message[2])
                        active.discard(i)
                    if error is not None:
                        raise TeacherError(error)
        finally:
            if active:  # stopped early or failed: cancel the rest, and read up to each worker's "done" so the next
                # call starts on a clean pipe (a worker blocked writing results would never read its next job)
                for i in active:
                    try:
                        self.conns[i].send(("cancel", job_id))
                    except OSError:
                        pass
                for i in list(active):
                    try:
                        while True:
                            message = self._recv(i)
                            if message[0] == "done" and message[1] == job_id:
                                self.teacher.stats.update(message[2])
                                break
                    except TeacherError:
                        pass

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []
