"""How one ``HTTPTeacher.generate`` call's requests are worked off: units of work (a request, or one sample of it
when the server cannot do ``n``) taken by the teacher's concurrent workers, a request delivered once all its samples
are in (or once, as failed), and the bound on answers that wait for the caller (:class:`Backlog`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

from ftcot_hf.teachers.base import (
    BudgetExhaustedError,
    FailedRequest,
    Generation,
    Request,
    RequestBudget,
    RequestFailedError,
)

logger = logging.getLogger(__name__)


class ScheduledTeacher(Protocol):
    """What a :class:`Schedule` asks of the teacher whose requests it works off (``HTTPTeacher``)."""

    keep_going: bool
    budget: RequestBudget | None
    stats: Counter[str]

    def _per_sample(self) -> bool: ...
    async def _call(self, request: Request, offset: int, count: int) -> list[Generation]: ...
    def _discarded(self, gens: Any) -> None: ...


BACKLOG_PER_SLOT = 4
"""Answers that may wait for the caller, per request the teacher keeps in flight at most."""


class Backlog:
    """Answers handed to the caller's thread and not yet taken by it. The caller stores each one in the request
    cache when it takes it, so an answer waiting here is lost to a kill -9: a bound keeps the loss to about the
    requests in flight, not to all that a slow consumer has let pile up (816 answers at 100k questions, measured by
    bench/teach_scale.py before this bound). Counted on both threads under a lock; the loop side waits on an event
    the caller's side sets."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int):
        self.loop, self.limit = loop, max(1, limit)
        self.count = 0
        self.lock = threading.Lock()
        self.event: asyncio.Event | None = None

    def add(self) -> None:
        with self.lock:
            self.count += 1

    def taken(self) -> None:
        with self.lock:
            self.count -= 1
            wake = self.count < self.limit and self.event is not None and not self.event.is_set()
        if wake:
            self.loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if self.event is not None:
            self.event.set()

    async def room(self) -> None:
        """Return once fewer than ``limit`` answers wait for the caller."""
        while True:
            with self.lock:
                if self.count < self.limit:
                    return
                if self.event is None:
                    self.event = asyncio.Event()
                self.event.clear()
            await self.event.wait()


class Schedule:
    """The units of one ``generate`` call and the requests they add up to. ``deliver`` receives ``(position,
    generations)`` once per request: all its samples, or (with ``keep_going``) what its failure yields; samples of
    a failed request that came back anyway are counted as billed and unused."""

    def __init__(self, teacher: ScheduledTeacher, requests: list[Request], deliver: Callable[[Any], None]):
        self.teacher, self.requests, self.deliver = teacher, requests, deliver
        self.units: deque[tuple[int, int, int]] = deque()  # (position, first sample offset, sample count)
        self.partial: dict[int, list[Generation | None]] = {}
        self.failed: set[int] = set()
        for pos, request in enumerate(requests):
            if request.n <= 0:
                deliver((pos, []))
            elif not teacher._per_sample() or request.n == 1:
                self.units.append((pos, 0, request.n))
            else:
                self.units.extend((pos, j, 1) for j in range(request.n))

    async def worker(self, backlog: Backlog | None) -> None:
        teacher = self.teacher
        while self.units:
            if backlog is not None:
                await backlog.room()
                if not self.units:
                    break
            pos, offset, count = self.units.popleft()
            if pos in self.failed:  # another sample of it failed for good: the request has failed
                continue
            try:
                gens = await teacher._call(self.requests[pos], offset, count)
            except BudgetExhaustedError:  # the budget refused one of its HTTP requests (the first, a retry)
                if not teacher.keep_going:
                    raise
                if self._fail(pos, "unsent"):
                    assert teacher.budget is not None  # only a budget refuses
                    self.deliver((pos, teacher.budget.refusal()))
            except RequestFailedError as exc:
                if not teacher.keep_going:
                    raise
                if self._fail(pos, "failed_requests"):
                    logger.info("%s", exc)  # counted, and summed up once at the end
                    self.deliver((pos, FailedRequest(exc)))
            else:
                self._collect(pos, offset, count, gens)

    def _fail(self, pos: int, counter: str) -> bool:
        """Mark request ``pos`` failed (once: False if it was already) and count it under ``counter``; its samples
        already in are billed and unused."""
        if pos in self.failed:
            return False
        self.failed.add(pos)
        self.teacher._discarded(g for g in self.partial.pop(pos, ()) if g is not None)
        self.teacher.stats[counter] += 1
        return True

    def _collect(self, pos: int, offset: int, count: int, gens: list[Generation]) -> None:
        """``count`` samples of request ``pos`` from ``offset``: delivered with the request's last one."""
        if pos in self.failed:  # billed, but its request has failed
            self.teacher._discarded(gens)
            return
        request = self.requests[pos]
        if count == request.n:
            self.deliver((pos, gens))
            return
        slots = self.partial.setdefault(pos, [None] * request.n)
        slots[offset : offset + count] = gens
        if all(g is not None for g in slots):
            del self.partial[pos]
            self.deliver((pos, slots))
