"""How hard an HTTP teacher pushes its servers: :class:`Pacing`, the number of requests it keeps in flight (AIMD, as
congestion control does) and how long it waits for each reply (derived from the tokens asked for and the throughput
observed).

Why: one default has to serve a fleet of batching GPU servers and a one-slot CPU server producing ~10 tokens/s. A
fixed concurrency of 16 and a fixed 60 s timeout make the second time out on nearly every request (a 4096-token
reply takes ~7 min there), re-send it, and the server, which keeps generating what was abandoned (``transformers
serve`` does), falls further behind. So:

* The bound on requests in flight starts at :data:`START_CONCURRENCY` (or the ceiling, when lower), rises by one per
  window of ``limit`` replies whose own speed (tokens/s of that request) held within :data:`LATENCY_TOLERANCE` of
  the best seen, and halves on a timeout, a 429 or a 5xx, once per window: the failures of requests sent before a
  cut say nothing about the new bound. ``max_concurrency`` is the ceiling. Lowering the bound makes new requests
  wait; it never cancels one already in flight.
* Without an explicit ``timeout``, a request asking for ``t`` tokens gets ``max(min_timeout, SAFETY_MARGIN * t *
  limit / throughput)`` seconds: ``throughput`` is tokens delivered per second of the servers being busy, so on a
  one-slot server the wait behind the ``limit - 1`` requests ahead is covered, and on a batching one (whose
  throughput grows with the load) it cancels out. Until the first reply tells the throughput, a request may take
  :data:`UNKNOWN_RATE_FACTOR` x ``min_timeout``; when it comes, the requests in flight get their derived deadline
  (a :class:`Deadline` moves). No probe request: it would be one more request (billed, counted) per teacher, and
  on a one-slot server it could not overtake a long reply anyway; the warning after ``min_timeout`` without any
  reply says what is known instead.

The decisions are plain methods driven by explicit events (``replied``, ``congested``, ``busy``), so they are tested
without a server or a clock; :meth:`Pacing.slot` is the asynchronous bound built on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

START_CONCURRENCY = 4
"""The bound on requests in flight before any reply has shown what the servers take."""
LATENCY_TOLERANCE = 2.0
"""A reply "holds" when its tokens/s is at least the best seen divided by this."""
SAFETY_MARGIN = 3.0
"""A derived timeout is this many times the expected time of the longest reply the request may get."""
MIN_TIMEOUT = 60.0
"""The shortest derived timeout (also: after this long without any reply, the teacher warns)."""
UNKNOWN_RATE_FACTOR = 30
"""Before any reply, a request may take this many ``min_timeout`` (30 min by default: the first reply of 4096
tokens from a server producing ~2.3 tokens/s)."""
HORIZON = 300.0
"""Busy seconds after which older observations weigh half (the throughput follows a server that slows down)."""


@dataclass
class Ticket:
    """One request holding a slot of the bound."""

    epoch: int
    """The bound's epoch when it was sent: a failure of a request sent before the last cut does not cut again."""
    limit: int
    """The bound when it was sent (how many requests may be ahead of it on a one-slot server)."""
    start: float


class Pacing:
    """The concurrency bound and the timeouts of one teacher's fleet (see the module docstring).

    Args:
        ceiling: ``max_concurrency``, the most requests in flight ever.
        timeout: an explicit per-request timeout (seconds): used as is, no probe; None: derived.
        min_timeout: the floor of a derived timeout, and of the probe's.
        start: the first bound (capped by ``ceiling``).
    """

    def __init__(self, ceiling: int, timeout: float | None = None, *, min_timeout: float = MIN_TIMEOUT,
                 start: int = START_CONCURRENCY):  # fmt: skip
        self.ceiling = max(1, int(ceiling))
        self.limit = min(max(1, start), self.ceiling)
        self.fixed_timeout = timeout
        self.min_timeout = min_timeout
        self.epoch = 0
        self.in_flight = 0
        self.cuts = 0
        """Times the bound was halved."""
        self.best_rate = 0.0
        """The best tokens/s of one request seen: the speed of an unloaded server."""
        self._held = 0
        self.tokens = 0.0
        self.busy_seconds = 0.0
        self._busy_mark: float | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._deadlines: set[Deadline] = set()

    # -- the decisions (events in, state out) ----------------------------------------------------------------------
    def replied(self, tokens: int, seconds: float) -> None:
        """A request got its answer: ``tokens`` generated in ``seconds``. One more window of replies that held
        raises the bound by one (up to the ceiling)."""
        known = self.throughput is not None
        self.tokens += max(tokens, 0)
        if not known and self.throughput is not None:
            for deadline in list(self._deadlines):  # the first measure: what was sent blind gets a real deadline
                deadline.move()
        rate = tokens / seconds if seconds > 0 and tokens > 0 else None
        if rate is not None:
            self.best_rate = max(self.best_rate, rate)
            if rate * LATENCY_TOLERANCE < self.best_rate:
                return  # slower than the servers can be: more load would only queue
        self._held += 1
        if self._held >= self.limit and self.limit < self.ceiling:
            self.limit += 1
            self._held = 0
            self._wake()

    def congested(self, epoch: int) -> bool:
        """A timeout, 429 or 5xx of a request sent at ``epoch``: halve the bound, once per window. Returns whether
        it was cut."""
        if epoch != self.epoch:
            return False
        self.epoch += 1
        self._held = 0
        if self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.cuts += 1
            return True
        return False

    def busy(self, now: float, delta: int) -> None:
        """``delta`` requests start (+1) or end (-1) at ``now``: the busy time the throughput is measured over."""
        if self._busy_mark is not None and self.in_flight > 0:
            self.busy_seconds += max(0.0, now - self._busy_mark)
        self._busy_mark = now
        self.in_flight += delta
        if self.busy_seconds > HORIZON:
            self.busy_seconds, self.tokens = self.busy_seconds / 2, self.tokens / 2

    @property
    def throughput(self) -> float | None:
        """Tokens/s delivered while busy (all servers together), None before any token came back."""
        if self.tokens <= 0 or self.busy_seconds <= 0:
            return None
        return self.tokens / self.busy_seconds

    def timeout(self, tokens: int, limit: int | None = None) -> float:
        """Seconds to wait for a reply of up to ``tokens`` tokens sent while the bound was ``limit``: the explicit
        timeout, else derived from the throughput (:data:`UNKNOWN_RATE_FACTOR` x ``min_timeout`` while unknown)."""
        if self.fixed_timeout is not None:
            return self.fixed_timeout
        rate = self.throughput
        if rate is None:
            return UNKNOWN_RATE_FACTOR * self.min_timeout
        ahead = self.limit if limit is None else limit
        return max(self.min_timeout, SAFETY_MARGIN * max(tokens, 1) * ahead / rate)

    def deadline(self, ticket: Ticket, tokens: int) -> Deadline:
        """The derived deadline of an attempt (inert with an explicit timeout: the HTTP client enforces that one)."""
        return Deadline(self, ticket, tokens)

    def expected_seconds(self, tokens: int) -> float | None:
        """How long one reply of ``tokens`` tokens takes on an unloaded server, as measured (None: unknown)."""
        rate = self.best_rate or self.throughput
        return tokens / rate if rate else None

    # -- the bound ---------------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        """Hold one of the ``limit`` slots while a request is in flight (waits for one to free)."""
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was woken for a slot it will not take: pass it on
                raise
        now = time.monotonic()
        self.busy(now, +1)
        try:
            yield Ticket(self.epoch, self.limit, now)
        finally:
            self.busy(time.monotonic(), -1)
            self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


class Deadline:
    """The derived timeout of one attempt, as an async context manager over the running task, which it cancels at
    ``ticket.start + timeout`` (raising :class:`TimeoutError` on exit); it moves when the first reply makes the
    throughput known. (``asyncio.timeout`` and its ``reschedule`` would do, from Python 3.11.) Cancelling the task
    makes the HTTP client drop the connection."""

    def __init__(self, pacing: Pacing, ticket: Ticket, tokens: int):
        self.pacing, self.ticket, self.tokens = pacing, ticket, tokens
        self.seconds: float | None = None
        self.expired = False
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def move(self) -> None:
        """(Re)arm at the deadline the pacing gives now."""
        if self._task is None:
            return
        if self._handle is not None:
            self._handle.cancel()
        self.seconds = self.pacing.timeout(self.tokens, self.ticket.limit)
        loop = self._task.get_loop()
        self._handle = loop.call_at(loop.time() + self.ticket.start + self.seconds - time.monotonic(), self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> Deadline:
        if self.pacing.fixed_timeout is None:
            self._task = asyncio.current_task()
            self.pacing._deadlines.add(self)
            self.move()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.pacing._deadlines.discard(self)
        if self._handle is not None:
            self._handle.cancel()
        if self.expired:  # the cancellation was ours (a client may have wrapped it in its own error)
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            raise TimeoutError(f"no reply in {self.seconds:g} s") from exc


def describe_rate(tokens_per_s: float) -> str:
    """``~12 tokens/s`` (two significant digits below 10)."""
    return f"~{tokens_per_s:.2g} tokens/s" if tokens_per_s < 10 else f"~{tokens_per_s:.0f} tokens/s"


def describe_seconds(seconds: float) -> str:
    """``0.05 s``, ``45 s``, ``~7 min``, ``~1.5 h``."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"
