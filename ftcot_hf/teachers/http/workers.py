"""Worker processes of an HTTP teacher (``processes=N``): N event loops, each in its own process with its own
clients and a share of ``max_concurrency``, driven by the parent's ``generate`` through pipes.

One loop's CPU per request (the openai client, httpx2, aiohttp: ~0.6 ms) caps one process at ~1,500 requests/s,
which a fast server at high concurrency can exceed. Workers are spawned once (``spawn``: safe with torch and our
loop thread in the parent) and reused; each rebuilds the parent's teacher class single-process from a spec (the
API keys travel through the pipe, never through the command line or a log). Retries, fail-over and stats happen
inside each worker (stats are merged into the parent's at the end of each call); a fleet's "down" marks and the
"this server ignores ``n``" discovery are per worker.

Protocol (parent -> worker): ``("job", job_id, requests, keep_going)`` | ``("cancel", job_id)`` | ``("close",)``.
Worker -> parent: ``("ready", None)`` | ``("setup_error", message)`` |
``("results", job_id, [(local position, gens or a FailedRequest)...])`` (one message per event-loop turn, like the
single-process hand-off) | ``("error", job_id, message)`` | ``("done", job_id, stats)`` (always last for a job, also
after a cancel).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ftcot_hf.teachers.base import Generation, Request, TeacherError

if TYPE_CHECKING:
    from ftcot_hf.teachers.http.core import HTTPTeacher


class _PipeOut:
    """What ``HTTPTeacher._run`` puts results into, in a worker: each put becomes one message to the parent."""

    def __init__(self, conn: Any, job_id: int, teacher: HTTPTeacher):
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
    cls, kwargs, keys = spec["cls"], spec["kwargs"], spec["api_keys"]
    try:
        teacher = cls(**kwargs, api_key="EMPTY")
        teacher._set_api_keys(keys)
    except Exception as exc:
        conn.send(("setup_error", f"{cls.__name__} worker: {type(exc).__name__}: {exc}"))
        return
    try:
        asyncio.run(_worker_loop(conn, teacher))
    except KeyboardInterrupt:  # the parent's Ctrl-C reaches the whole process group; the parent reports it
        pass


async def _worker_loop(conn: Any, teacher: HTTPTeacher) -> None:
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
                    teacher.keep_going = bool(message[3]) if len(message) > 3 else False
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


def worker_specs(teacher: HTTPTeacher) -> list[dict[str, Any]]:
    """What each worker needs to rebuild ``teacher`` (single-process) with its share of ``max_concurrency``. The
    keys travel through the process pipe, never through the command line or a log."""
    n, total = teacher.processes, teacher.max_concurrency
    endpoints = teacher._fleet.endpoints
    specs = []
    for share in [total // n + (1 if i < total % n else 0) for i in range(n)]:
        kwargs = {"model": teacher.model, "base_url": [e.url for e in endpoints], "max_concurrency": share}
        kwargs |= teacher._worker_options()
        specs.append({"cls": type(teacher), "kwargs": kwargs, "api_keys": [e.api_key for e in endpoints]})
    return specs


class WorkerPool:
    """The parent's side: start the workers, split each ``generate`` call among them, merge what comes back."""

    def __init__(self, teacher: HTTPTeacher):
        import multiprocessing

        specs = worker_specs(teacher)
        self.teacher = teacher
        self.broken = False
        """A worker died: the pool cannot serve another call (the teacher starts a new one)."""
        self._jobs = itertools.count()
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads (torch, our loop) in the parent
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        label = teacher._label
        try:
            for i, spec in enumerate(specs):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main, args=(child_end, spec), name=f"{label}-teacher-{i}", daemon=True
                )
                proc.start()
                child_end.close()
                self.conns.append(parent_end)
                self.procs.append(proc)
            for i in range(len(self.conns)):
                message = self._recv(i)
                if message[0] != "ready":
                    raise TeacherError(f"{label} teacher: worker process {i} failed to start: {message[1]}")
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
                f"{self.teacher._label} teacher: worker process {i} exited unexpectedly (exit code {code}) while "
                f"talking to {self.teacher._where()}."
            ) from None

    def generate(self, requests: list[Request]) -> Iterator[tuple[int, list[Generation]]]:
        from multiprocessing.connection import wait

        job_id = next(self._jobs)
        n = len(self.conns)
        # round-robin: equal shares, and the early positions (which a resumed run wants first) spread over all
        positions = [list(range(i, len(requests), n)) for i in range(n)]
        active = {i for i in range(n) if positions[i]}
        for i in active:
            self.conns[i].send(("job", job_id, [requests[p] for p in positions[i]], self.teacher.keep_going))
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
