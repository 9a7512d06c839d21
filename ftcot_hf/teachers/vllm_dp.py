"""Data parallelism for the ``vllm`` teacher: ``data_parallel_size`` engines, one per worker process, each on its own
``tensor_parallel_size`` GPUs (vLLM's ``LLM`` refuses ``data_parallel_size > 1`` in one process and points to a
multi-process script: this is that script, behind the teacher's ``generate``).

Each worker builds its ``vllm.LLM`` once and answers request lists; the parent deals a call's requests round-robin
over the workers and yields each result as a worker finishes it (the request cache stores it at once). A worker that
dies (out of memory, a crashed engine) ends the call with one line naming it, never a hang.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Iterator, Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.base import Request, TeacherError

POLL_S = 1.0
"""How often the parent checks that its workers are alive while it waits for a result."""


def _devices(rank: int, per_engine: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``rank``: its slice of the parent's devices (None: no CUDA setting to
    split, e.g. a CPU build)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip()]
    else:
        try:
            import torch

            ids = [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        except ImportError:
            ids = []
    if not ids:
        return None
    mine = ids[rank * per_engine : (rank + 1) * per_engine]
    if len(mine) < per_engine:
        raise FtcotError(f"data_parallel_size x tensor_parallel_size needs {per_engine * (rank + 1)} GPUs or more; "
                         f"{len(ids)} are visible ({','.join(ids)}).")  # fmt: skip
    return ",".join(mine)


def _plain(output: Any) -> tuple[int | None, list[tuple[int, str, str | None, int]]]:
    """A ``RequestOutput`` as plain data for the pipe: (prompt tokens, [(index, text, finish reason, tokens)])."""
    prompt = len(output.prompt_token_ids) if output.prompt_token_ids is not None else None
    return prompt, [(c.index, c.text, c.finish_reason, len(c.token_ids)) for c in output.outputs]


def _worker(rank: int, model: str, engine_args: dict[str, Any], devices: str | None, tasks: Any, results: Any) -> None:
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    from ftcot_hf.teachers.vllm_engine import _build_engine, import_vllm, run_engine

    try:
        vllm = import_vllm()
        llm = _build_engine(vllm, model, engine_args)
    except Exception as e:  # the parent reports it: this process has no console of its own worth reading
        results.put((rank, "error", f"{type(e).__name__}: {e}"))
        return
    results.put((rank, "ready", None))
    while True:
        job = tasks.get()
        if job is None:
            return
        try:
            for chat in (False, True):
                part = [(pos, prompt, args) for pos, prompt, is_chat, args in job if is_chat == chat]
                if not part:
                    continue
                params = [vllm.SamplingParams(**args) for _, _, args in part]
                for i, outcome in run_engine(llm, [prompt for _, prompt, _ in part], params, chat):
                    value = f"{outcome}" if isinstance(outcome, BaseException) else _plain(outcome)
                    results.put((rank, "result", (part[i][0], isinstance(outcome, BaseException), value)))
        except Exception as e:
            results.put((rank, "error", f"{type(e).__name__}: {e}"))
            return
        results.put((rank, "done", None))


class _Choice:
    __slots__ = ("index", "text", "finish_reason", "token_ids")

    def __init__(self, index: int, text: str, finish_reason: str | None, tokens: int):
        self.index, self.text, self.finish_reason, self.token_ids = index, text, finish_reason, range(tokens)


class _Output:
    """What :meth:`VLLMTeacher._result` reads of a ``RequestOutput``, rebuilt from a worker's plain data."""

    __slots__ = ("prompt_token_ids", "outputs")

    def __init__(self, prompt_tokens: int | None, choices: list[tuple[int, str, str | None, int]]):
        self.prompt_token_ids = None if prompt_tokens is None else range(prompt_tokens)
        self.outputs = [_Choice(*c) for c in choices]


class EnginePool:
    """``size`` worker processes, each with its own ``vllm.LLM(model, **engine_args)``."""

    def __init__(self, model: str, engine_args: dict[str, Any], size: int):
        self.model = model
        self.broken = False
        args = {k: v for k, v in engine_args.items() if k != "data_parallel_size"}
        per_engine = int(args.get("tensor_parallel_size", 1))
        context = mp.get_context("spawn")  # vLLM and CUDA do not survive fork
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(size)]
        self.procs = [
            context.Process(target=_worker, args=(rank, model, args, _devices(rank, per_engine), self.tasks[rank],
                                                  self.results), daemon=True, name=f"ftcot-vllm-dp{rank}")  # fmt: skip
            for rank in range(size)
        ]
        for proc in self.procs:
            proc.start()
        try:
            ready = 0
            while ready < size:
                rank, kind, value = self._next()
                if kind == "error":
                    raise FtcotError(f"vLLM could not start engine {rank} of {size} for --teacher_model {model!r}: "
                                     f"{str(value).splitlines()[0][:300]}")  # fmt: skip
                ready += kind == "ready"
        except BaseException:
            self.close()
            raise

    def _next(self) -> tuple[int, str, Any]:
        while True:
            try:
                return self.results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [(rank, p.exitcode) for rank, p in enumerate(self.procs) if not p.is_alive()]
                if dead:
                    rank, code = dead[0]
                    raise TeacherError(
                        f"vLLM engine process {rank} died (exit code {code}); see its log above."
                    ) from None

    def run(self, requests: Sequence[Request], args: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Any]]:
        """``(position, RequestOutput-like or exception)`` of every request, as the workers finish them."""
        if self.broken:
            raise TeacherError("the vLLM engine processes were stopped in the middle of a call: build the teacher "
                               "again.")  # fmt: skip
        busy = 0
        for rank, tasks in enumerate(self.tasks):
            job = [(pos, requests[pos].prompt, requests[pos].chat, args[pos])
                   for pos in range(rank, len(requests), len(self.tasks))]  # fmt: skip
            if job:
                tasks.put(job)
                busy += 1
        try:
            while busy:
                rank, kind, value = self._next()
                if kind == "done":
                    busy -= 1
                elif kind == "error":
                    raise TeacherError(f"vLLM engine process {rank} failed: {str(value).splitlines()[0][:300]}")
                else:
                    pos, refused, data = value
                    yield pos, ValueError(data) if refused else _Output(*data)
        finally:
            if busy:  # left mid-call (an error, Ctrl-C): the workers' late results must not answer the next call
                self.broken = True
                self.close()

    def close(self) -> None:
        for tasks, proc in zip(self.tasks, self.procs, strict=True):
            if proc.is_alive():
                tasks.put(None)
        for proc in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=30)
