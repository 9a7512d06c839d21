"""The ``openai`` teacher: any OpenAI-compatible endpoint (``vllm serve``, SGLang, TGI, llama.cpp's server, OpenAI,
HF Inference Providers). This module is only the API: the ``/completions`` and ``/chat/completions`` bodies and
answers. Concurrency, fleets, retries and the ``n`` fallback are :class:`HTTPTeacher`'s.
"""

from __future__ import annotations

from typing import Any

from ftcot_hf.teachers.base import THINK_CLOSE, THINK_OPEN, Generation, Request, SamplingParams, register_teacher
from ftcot_hf.teachers.http.core import HTTPTeacher
from ftcot_hf.teachers.http.transport import ResponseError, normalize_finish_reason


def request_body(model: str, request: Request, params: SamplingParams, n: int) -> dict[str, Any]:
    """The body of a ``/completions`` or ``/chat/completions`` request (the online teacher's, and each line of the
    OpenAI Batch API's JSONL)."""
    body: dict[str, Any] = {"model": model}
    if request.chat:
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    body.update(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p)
    if n != 1:
        body["n"] = n
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


@register_teacher("openai")
class OpenAITeacher(HTTPTeacher):
    """A teacher behind one or more OpenAI-compatible servers.

    Takes :class:`~ftcot_hf.teachers.http.core.HTTPTeacher`'s arguments: ``model`` (the served name:
    ``vllm serve <model>``'s, ``gpt-4o-mini``, ``meta-llama/...:provider``), ``base_url`` (the API root ending in
    ``/v1``, or several), ``api_key`` (else ``$OPENAI_API_KEY`` or ``api_key_env``'s variable, else the HF token for
    Hugging Face hosts, else ``"EMPTY"``), ``max_concurrency``, ``timeout``, ``max_retries``, ``supports_n`` (auto by
    default: a server that ignores ``n``, as llama.cpp's does, gets one request per sample after its first answer),
    ``extra_body`` (e.g. ``{"repeat_penalty": 1.0}`` for a greedy llama.cpp), ``seed``, ``stop``...

    Example:
        >>> teacher = OpenAITeacher.from_config(model="Qwen/Qwen2.5-7B-Instruct", base_url=["http://localhost:8000/v1"],
        ...                                     max_concurrency=64)  # doctest: +SKIP
        >>> [(pos, gens)] = teacher.generate([Request("Q: ... A: Let's think step by step.", n=4)])  # doctest: +SKIP
    """

    default_api_key_env = "OPENAI_API_KEY"
    base_url_hint = "is base_url an OpenAI-compatible API root (ending in /v1)?"

    def request_path(self, request: Request) -> str:
        return "/chat/completions" if request.chat else "/completions"

    def build_body(self, request: Request, params: SamplingParams, n: int) -> dict[str, Any]:
        return request_body(self.model, request, params, n)

    def parse_response(self, data: Any, request: Request, params: SamplingParams) -> list[Generation]:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list):
            error = data.get("error") if isinstance(data, dict) else None
            if error:
                message = error.get("message", error) if isinstance(error, dict) else error
                raise ResponseError(f"the server answered with an error: {self._scrub(str(message))[:300]}")
            raise ResponseError("the response has no 'choices' list", self.base_url_hint)
        if not choices:
            raise ResponseError("the response has an empty 'choices' list")
        if all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in choices):
            choices = sorted(choices, key=lambda c: c["index"])
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None
        total = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
        k = len(choices)
        gens: list[Generation] = []
        for i, choice in enumerate(choices):
            text = self._choice_text(choice, request.chat)
            # usage counts all choices together: split evenly (exact for n=1; sums to the server's total).
            tokens = None if total is None else total // k + (1 if i < total % k else 0)
            reason = normalize_finish_reason(
                choice.get("finish_reason"), tokens if k == 1 else None, params.max_tokens
            )
            gens.append(Generation(text, reason, prompt_tokens, tokens))
        return gens

    def _choice_text(self, choice: Any, chat: bool) -> str:
        if isinstance(choice, dict):
            if chat and isinstance(choice.get("message"), dict):
                message = choice["message"]
                return with_reasoning(message.get("content"), message)  # content None: a refusal or tool call
            if not chat and "text" in choice:
                return with_reasoning(choice["text"], choice)
        kind = "a 'message'" if chat else "a 'text'"
        raise ResponseError(f"a choice has no {kind} field: {self._scrub(repr(choice))[:200]}")

    def status_hint(self, status: int) -> str:
        if status == 404:
            return "check the model name and that base_url is the API root ending in /v1 (e.g. http://host:8000/v1)."
        return super().status_hint(status)


def with_reasoning(content: str | None, part: dict[str, Any]) -> str:
    """The reply as one text: a reasoning trace the server parsed out (``reasoning_content``: vLLM, SGLang and the
    DeepSeek API; ``reasoning``: newer vLLM and OpenRouter) goes back inline as ``<think>trace</think>`` before the
    visible answer, the form a reasoning model writes it in, so the cache, the transformers teacher and the
    augmenter see one representation."""
    trace = part.get("reasoning_content") or part.get("reasoning")
    text = content or ""
    if isinstance(trace, str) and trace:
        return f"{THINK_OPEN}{trace}{THINK_CLOSE}{text}"
    return text
