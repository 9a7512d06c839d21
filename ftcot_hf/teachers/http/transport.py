"""The HTTP transport under :class:`~ftcot_hf.teachers.http.core.HTTPTeacher`: :class:`Fleet` (the servers of one
teacher: which one gets the next attempt, retries with backoff and ``Retry-After``, fail-over, down marks, the
bound on requests in flight, the classification of failed attempts, messages without credentials) and the small
pieces it is built from, each a plain function so it can be tested alone (those about base URLs are in ``urls.py``).

Our retry loop is the only one (the client gets ``max_retries=0``), so it can fail over to another server of a
fleet, honour ``Retry-After``, count what it did (the teacher's ``stats``) and give a clean error. A request whose
retries are spent raises :class:`RequestFailedError` (that request failed; a teacher with ``keep_going`` reports it
and goes on with the others); a non-retryable status raises a plain :class:`TeacherError` (the setup is wrong).
Retried: 408, 409, 429, 5xx, timeouts, connection errors. Not retried (a retry cannot fix them): other 4xx. Two HTTP
clients send the same request: a bare ``aiohttp`` session (the default: ~4x less client CPU per request than the
openai client over its aiohttp adapter, ``bench/teach_throughput.py``) and the ``openai`` package's generic ``post``
over httpx. The file is over 500 lines because the fleet, its retry loop and both clients' failure classification
belong together: split, each piece would import the others' private state.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import importlib
import itertools
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ftcot_hf.teachers.base import RequestFailedError, TeacherError
from ftcot_hf.teachers.http.adaptive import Pacing
from ftcot_hf.teachers.http.urls import (
    client_url,
    display_url,
    register_secrets,
    resolve_api_key,
    split_urls,
    url_secrets,
)
from ftcot_hf.utils.scrub import scrub_text

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 300.0
"""A server asking for a longer pause than this gets this (a teaching run should not sleep for hours)."""
RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides 5xx: the statuses another attempt can fix."""
TELEMETRY_HEADERS = (
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Async",
)
LENGTH_REASONS = frozenset({"length", "max_tokens", "max_length", "model_length", "max_output_tokens"})
"""Finish reasons meaning "hit the token budget", in the spellings of vLLM, TGI, llama.cpp, OpenAI, Anthropic..."""
_STOP_REASONS = frozenset({"stop", "eos", "eos_token", "stop_sequence", "end_turn"})


@dataclass(eq=False)
class RetryableError(Exception):
    """An attempt failed in a way another attempt (maybe on another server) can fix."""

    message: str
    retry_after: float | None = None
    connect_failed: bool = False
    """Nothing answered at that address: mark the server down at once."""
    server_fault: bool = True
    """Counts towards marking the server down (a 429 does not: the server is alive, just busy)."""
    congestion: bool = False
    """A sign of too much load (a timeout, 408, 429, 5xx): the concurrency bound is halved."""


class ResponseError(Exception):
    """A 200 answer that is not what the API returns (raised by a teacher's ``parse_response``). With
    ``keep_going`` re-asked up to ``max_retries`` times (a flaky proxy); one that stays malformed fails the request
    with a message naming the server and the model (it usually means ``base_url`` is not the API it should be)."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(what)
        self.what, self.hint = what, hint


@dataclass
class Endpoint:
    """One server of the fleet, with the state the scheduler needs."""

    index: int
    url: str
    """As given (it may carry ``user:password@`` and a query string with a key: never shown)."""
    display: str
    """``url`` without credentials and with its query values masked: what messages show."""
    api_key: str
    client: Any = None
    in_flight: int = 0
    failures: int = 0
    """Consecutive server-side failures (reset by a success)."""
    down_until: float = 0.0
    served: int = 0
    session: Any = None
    """The aiohttp backend's own session (``client`` is then unused; see :func:`make_aiohttp_session`)."""
    post_url: str = ""
    """``url`` without credentials and query: what the request paths are appended to (:func:`client_url`)."""
    query: dict[str, str] = field(default_factory=dict)
    """``url``'s query, sent as parameters of every request."""
    auth_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.post_url, self.query, self.auth_headers = client_url(self.url)


def parse_retry_after(headers: Any) -> float | None:
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
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def is_connect_failure(exc: BaseException) -> bool:
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


def is_timeout(exc: BaseException) -> bool:
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


def normalize_finish_reason(raw: Any, completion_tokens: int | None, max_tokens: int) -> str:
    """Map a server's finish reason onto ``"stop"`` / ``"length"``: ``length``-like reasons (vLLM, TGI, llama.cpp
    and OpenAI spellings) are ``"length"``; a missing one is ``"length"`` only when the exact token count shows
    the budget was used up; anything else (``stop``, ``eos``, ``content_filter``, ``tool_calls``) ended the text."""
    if isinstance(raw, str):
        if raw.lower() in LENGTH_REASONS:
            return "length"
        if raw.lower() not in _STOP_REASONS:
            logger.debug("unusual finish_reason %r recorded as 'stop'", raw)
        return "stop"
    if completion_tokens is not None and completion_tokens >= max_tokens:
        return "length"
    return "stop"


def http_response_type(openai: Any) -> type:
    """The HTTP response class of the installed client (``httpx2`` for openai >= 3, ``httpx`` before): passed as
    ``cast_to`` it makes ``client.post`` return the raw response."""
    if hasattr(openai, "DefaultAsyncHttpx2Client"):
        import httpx2

        return httpx2.Response
    import httpx

    return httpx.Response


def make_http_client(
    openai: Any, *, timeout: float | None, max_concurrency: int, http_backend: str, label: str
) -> Any:
    """The transport of an ``AsyncOpenAI`` client (None = the client's default). Its pool size follows
    ``max_concurrency`` so the bound is ours."""
    limits_type = type(getattr(openai, "DEFAULT_CONNECTION_LIMITS", None))
    kwargs: dict[str, Any] = {"timeout": timeout}
    if limits_type is not type(None):
        size = max(max_concurrency, 1)
        kwargs["limits"] = limits_type(max_connections=size, max_keepalive_connections=size)
    if http_backend in ("auto", "aiohttp") and hasattr(openai, "DefaultAioHttpClient"):
        try:
            return openai.DefaultAioHttpClient(**kwargs)
        except (RuntimeError, ImportError) as exc:  # the aiohttp extra is not installed
            if http_backend == "aiohttp":
                raise TeacherError(f"{label} teacher: the aiohttp transport is unavailable ({exc}).") from None
    elif http_backend == "aiohttp":
        raise TeacherError(f"{label} teacher: this `openai` version has no aiohttp transport (DefaultAioHttpClient).")
    if hasattr(openai, "DefaultAsyncHttpxClient"):
        return openai.DefaultAsyncHttpxClient(**kwargs)
    return None


def make_aiohttp_session(
    openai: Any, *, url: str, headers: dict[str, str], timeout: float | None, max_concurrency: int
) -> Any:
    """The aiohttp backend: a bare ``aiohttp.ClientSession`` posting the body itself, or None without aiohttp.

    Why not the openai client over its aiohttp transport: that stacks openai's request building, httpx2's models and
    the httpx-to-aiohttp adapter on every request, 0.9 ms of client CPU per request against 0.25 ms for a bare
    session (``bench/teach_throughput.py``), which caps one process near 1,000 requests/s. The request is the
    same (the auth header, the JSON body, no redirects followed, per-read timeouts as the adapter sets them), as
    are the errors (:meth:`Fleet._attempt`)."""
    try:
        import aiohttp
    except ImportError:
        return None
    ssl_context: Any = True
    if urlsplit(url).scheme == "https":  # the certificates the openai client trusts (certifi, $SSL_CERT_FILE)
        http = importlib.import_module("httpx2" if hasattr(openai, "DefaultAsyncHttpx2Client") else "httpx")
        ssl_context = http.create_ssl_context()
    connector = aiohttp.TCPConnector(limit=max(max_concurrency, 1), ssl=ssl_context)
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
    )


def aiohttp_timeout(connect: float, read: float | None) -> Any:
    """The per-request timeouts of the aiohttp backend: ``read`` None when the deadline is ours (derived)."""
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


@dataclass
class StatusFailure:
    """A non-2xx answer of the aiohttp backend, shaped as the openai client's ``APIStatusError`` (what
    :meth:`Fleet._status_error` reads), so both backends classify and word failures the same way."""

    status_code: int
    body: Any
    message: str
    headers: Any

    @property
    def response(self) -> StatusFailure:
        return self


def status_failure(status: int, content: bytes, headers: Any) -> StatusFailure:
    """As the openai client builds its error: the JSON body's ``error`` object (else the body), and a message
    ``Error code: <status> - <error.message>``."""
    text = content.decode("utf-8", "replace").strip()
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    error = body.get("error", body) if isinstance(body, dict) else body
    message = f"Error code: {status}"
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        message += f" - {error['message']}"
    return StatusFailure(status, error, message, headers)


def stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Finalizer of an abandoned teacher: stop its loop so the private thread ends (never blocks)."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


class Fleet:
    """The servers behind one teacher and how a request reaches one of them (see the module docstring).

    Requests go to the least busy live server; ``down_after`` consecutive 5xx/timeouts (or one refused connection)
    mark a server down for ``down_cooldown`` seconds. A request makes at most ``max_retries + 1`` rounds of attempts,
    each trying every live server once, with ``min(backoff_max, backoff_base * 2**k)`` (jittered to 50-100 %) or the
    server's ``Retry-After`` (plus up to 10 %) between rounds. How many attempts are in flight at once (up to
    ``max_concurrency``) and how long each may take (``timeout``, else derived) are :attr:`pacing`'s (``adaptive.py``).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        openai: Any,
        api_key: str | None,
        api_key_env: str,
        label: str,
        model: str,
        max_concurrency: int,
        timeout: float | None,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        down_after: int,
        down_cooldown: float,
        http_backend: str,
        status_hint: Callable[[int], str],
        stats: Counter[str],
        min_timeout: float = 60.0,
    ):
        self.openai, self.label, self.model, self.stats, self.status_hint = openai, label, model, stats, status_hint
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.down_after, self.down_cooldown, self.http_backend = down_after, down_cooldown, http_backend
        self.endpoints = [
            Endpoint(i, url, display_url(url), resolve_api_key(api_key, url, api_key_env))
            for i, url in enumerate(split_urls(base_url, label))
        ]
        self.set_api_keys([e.api_key for e in self.endpoints])
        self._response_type = http_response_type(openai)
        omit = openai.Omit()  # per-request headers the client adds unless the request itself omits them
        self._options: dict[str, Any] = {
            "headers": {"x-stainless-retry-count": omit, "x-stainless-read-timeout": omit}
        }
        self._rr = itertools.count()
        self.pacing = Pacing(max_concurrency, timeout, min_timeout=min_timeout)
        """The bound on attempts in flight and their timeouts (it lives as long as the teacher: what it learnt
        about the servers carries over to the next ``generate`` call)."""
        self._connect_timeout = timeout if timeout is not None else min_timeout
        self._aiohttp_timeout: Any = None

    # -- servers and messages --------------------------------------------------------------------------------------
    @property
    def base_urls(self) -> list[str]:
        """The base URLs without any credentials they carried."""
        return [e.display for e in self.endpoints]

    def set_api_keys(self, keys: Sequence[str]) -> None:
        """One key per server; every real one (not "EMPTY") is scrubbed from messages."""
        for ep, key in zip(self.endpoints, keys, strict=True):
            ep.api_key = key
        secrets = {k for k in keys if len(k) >= 4} | {s for e in self.endpoints for s in url_secrets(e.url)}
        self._secrets = sorted(secrets - {"EMPTY"}, key=len)[::-1]
        register_secrets(self._secrets)

    def scrub(self, text: str) -> str:
        """``text`` with every API key in use masked, in every form a server may echo it in (raw, percent- or
        base64-encoded: the Basic auth of a URL's password): :func:`ftcot_hf.utils.scrub.scrub_text`."""
        return scrub_text(text, self._secrets)

    def where(self) -> str:
        urls = self.base_urls
        return urls[0] if len(urls) == 1 else f"[{', '.join(urls)}]"

    def fatal(self, ep: Endpoint, what: str, hint: str = "") -> TeacherError:
        message = f"{self.label} teacher: {ep.display} (model {self.model!r}): {self.scrub(what)}."
        return TeacherError(f"{message} {self.scrub(hint)}".strip())

    # -- clients ---------------------------------------------------------------------------------------------------
    async def open(self, default_headers: Callable[[str], dict[str, Any]]) -> None:
        """Create the clients inside the loop they will run on (aiohttp sessions are bound to their loop)."""
        for ep in self.endpoints:
            if self.http_backend in ("auto", "aiohttp"):
                headers = {"Authorization": f"Bearer {ep.api_key}", "Accept": "application/json"}
                headers |= {k: v for k, v in default_headers(ep.api_key).items() if isinstance(v, str)}
                headers |= ep.auth_headers
                ep.session = make_aiohttp_session(self.openai, url=ep.post_url, headers=headers,
                                                  timeout=self._connect_timeout,
                                                  max_concurrency=self.max_concurrency)  # fmt: skip
                if ep.session is not None:
                    continue
            http_client = make_http_client(
                self.openai, timeout=self._connect_timeout, max_concurrency=self.max_concurrency,
                http_backend=self.http_backend, label=self.label,
            )  # fmt: skip
            ep.client = self.openai.AsyncOpenAI(
                base_url=ep.post_url,
                api_key=ep.api_key,
                max_retries=0,  # our retries are the only ones, so they are counted and can fail over
                timeout=self._connect_timeout,
                http_client=http_client,
                default_headers=default_headers(ep.api_key) | ep.auth_headers,
                default_query=ep.query or None,
            )

    async def aclose(self) -> None:
        for ep in self.endpoints:
            if ep.session is not None:
                await ep.session.close()
                ep.session = None
            if ep.client is not None:
                await ep.client.close()
                ep.client = None

    # -- one request, retried --------------------------------------------------------------------------------------
    def pick(self, tried: set[int]) -> Endpoint | None:
        """The live, untried server with the fewest requests in flight (ties: round-robin)."""
        now = time.monotonic()
        live = [e for e in self.endpoints if e.index not in tried and e.down_until <= now]
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        start, size = next(self._rr), len(self.endpoints)
        return min(live, key=lambda e: (e.in_flight, (e.index - start) % size))

    async def post(
        self, path: str, body: dict[str, Any], gate: Callable[[], Callable[[], None]] | None = None,
        tokens: int = 0,
    ) -> tuple[Endpoint, bytes, float]:  # fmt: skip
        """POST ``body`` to ``path`` of one server, retrying and failing over until a 200 answer comes back (the
        server, its raw bytes and the seconds its attempt took) or the retries are spent (:class:`RequestFailedError`:
        this request failed, the others may not). ``gate`` is called before every attempt, inside the concurrency
        bound (the budget: it raises to refuse the attempt, else returns what ends the attempt's hold when its
        answer is in). ``tokens``: the most the reply may generate (its timeout is derived from it)."""
        round_ = 0
        tried: set[int] = set()
        last: RetryableError | None = None
        while True:
            ep = self.pick(tried)
            if ep is None and not tried:  # every server is cooling down: probe the one back soonest
                ep = min(self.endpoints, key=lambda e: e.down_until)
            if ep is None:  # every live server failed this round: back off
                assert last is not None
                if round_ >= self.max_retries:
                    raise RequestFailedError(
                        f"{self.label} teacher: gave up on model {self.model!r} after {round_ + 1} round(s) of "
                        f"attempts on {self.where()}; last error: {last.message}"
                    )
                delay = self.delay(round_, last.retry_after)
                round_ += 1
                self.stats["retries"] += 1
                logger.info("%s teacher: %s; retry %d/%d in %.2f s", self.label, last.message, round_,
                            self.max_retries, delay)  # fmt: skip
                await asyncio.sleep(delay)
                tried.clear()
                continue
            if tried:
                self.stats["failovers"] += 1
            tried.add(ep.index)
            pacing = self.pacing
            try:
                async with pacing.slot() as ticket:  # lowering the bound never cancels what is in flight
                    release = gate() if gate is not None else None
                    ep.in_flight += 1
                    try:
                        async with pacing.deadline(ticket, tokens) as deadline:
                            content = await self._attempt(ep, path, body, self.timeout)
                    except TimeoutError as exc:  # the derived deadline passed (the explicit one is the client's)
                        raise self._connection_error(ep, exc, deadline.seconds) from None
                    finally:
                        ep.in_flight -= 1
                        if release is not None:
                            release()
            except RetryableError as exc:
                last = exc
                if exc.congestion and pacing.congested(ticket.epoch):
                    logger.info("%s teacher: %s; requests in flight at most %d now", self.label, exc.message,
                                pacing.limit)  # fmt: skip
                self._note_failure(ep, exc)
                continue
            ep.failures, ep.down_until = 0, 0.0
            ep.served += 1
            return ep, content, time.monotonic() - ticket.start

    def delay(self, round_: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after * (1.0 + 0.1 * random.random())  # never earlier than asked
        cap = min(self.backoff_max, self.backoff_base * 2**round_)
        return cap * (0.5 + 0.5 * random.random())

    def _note_failure(self, ep: Endpoint, exc: RetryableError) -> None:
        if exc.connect_failed or (exc.server_fault and ep.failures + 1 >= self.down_after):
            if ep.down_until <= time.monotonic() and len(self.endpoints) > 1:
                self.stats["marked_down"] += 1
                logger.warning("%s teacher: %s marked down for %.0f s (%s)", self.label, ep.display,
                               self.down_cooldown, exc.message)  # fmt: skip
            ep.down_until = time.monotonic() + self.down_cooldown
        if exc.server_fault:
            ep.failures += 1

    async def _attempt(self, ep: Endpoint, path: str, body: dict[str, Any], timeout: float | None) -> bytes:
        """One HTTP request. Through the client's generic ``post`` (its documented way to send a body as is, with
        its auth, headers and errors) rather than ``completions.create``: that skips the typed-parameter transform,
        about a sixth of the client's CPU per request, which is what bounds throughput at high concurrency; and
        the raw bytes come back, so a malformed answer is ours to diagnose. Either client closes the connection of
        an attempt it abandons (timed out, cancelled), so a server that aborts on disconnect (vLLM) stops generating
        it."""
        openai = self.openai
        self.stats["http_requests"] += 1
        if ep.session is not None:
            return await self._attempt_aiohttp(ep, path, body, timeout)
        try:
            options = {**self._options, "timeout": timeout}
            response = await ep.client.post(path, body=body, cast_to=self._response_type, options=options)
            return response.content
        except openai.APIStatusError as exc:
            raise self._status_error(ep, exc) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise self._connection_error(ep, exc, timeout) from None

    async def _attempt_aiohttp(self, ep: Endpoint, path: str, body: dict[str, Any], timeout: float | None) -> bytes:
        """:meth:`_attempt` on the aiohttp backend's session: the same request, the same failure classes."""
        import aiohttp

        if self._aiohttp_timeout is None:
            self._aiohttp_timeout = aiohttp_timeout(self._connect_timeout, timeout)
        try:
            async with ep.session.post(ep.post_url + path, json=body, params=ep.query or None,
                                       allow_redirects=False, timeout=self._aiohttp_timeout) as response:  # fmt: skip
                content = await response.read()
                status = response.status
                if 200 <= status < 300:
                    return content
                failure = status_failure(status, content, response.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._connection_error(ep, exc, timeout) from None
        raise self._status_error(ep, failure) from None

    def _connection_error(self, ep: Endpoint, exc: BaseException, timeout: float | None = None) -> RetryableError:
        """A failure below HTTP (refused, reset, timed out), counted and worded alike for both backends."""
        if is_connect_failure(exc):
            self.stats["connection_errors"] += 1
            return RetryableError(f"cannot connect to {ep.display}", connect_failed=True)
        if is_timeout(exc):
            self.stats["timeouts"] += 1
            waited = f" after {f'{timeout:.1f}'.rstrip('0').rstrip('.')} s" if timeout is not None else ""
            return RetryableError(f"{ep.display} timed out{waited}", congestion=True)
        self.stats["connection_errors"] += 1
        return RetryableError(f"connection to {ep.display} failed ({self.scrub(str(exc))[:120]})")

    def _status_error(self, ep: Endpoint, exc: Any) -> Exception:
        status = int(getattr(exc, "status_code", 0) or 0)
        body = getattr(exc, "body", None)
        detail = body.get("message") if isinstance(body, dict) else None
        detail = self.scrub(str(detail if detail else getattr(exc, "message", "") or body or ""))[:300]
        if status in RETRYABLE_STATUS or status >= 500:
            self.stats["http_429" if status == 429 else "http_5xx" if status >= 500 else f"http_{status}"] += 1
            response = getattr(exc, "response", None)
            retry_after = parse_retry_after(getattr(response, "headers", None))
            return RetryableError(
                f"HTTP {status} from {ep.display}: {detail}", retry_after, server_fault=status != 429,
                congestion=status != 409,
            )  # fmt: skip
        return self.fatal(ep, f"HTTP {status}: {detail}", self.status_hint(status))
