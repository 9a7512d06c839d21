"""The ``anthropic_batch`` teacher: Anthropic's Message Batches API. This module is only the API: a request is
``{"custom_id", "params": <a Messages API body>}``, a batch is created by ``POST /v1/messages/batches``, polled at
``/v1/messages/batches/<id>`` and read from its ``results_url`` (JSONL: ``succeeded`` / ``errored`` / ``canceled``
/ ``expired`` per request). The Messages API has no ``n`` and no raw completion: one request per sample, the prompt
as the one user message. The state machine is :class:`BatchTeacher`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from ftcot_hf.teachers.base import THINK_CLOSE, THINK_OPEN, Generation, Request, SamplingParams, register_teacher
from ftcot_hf.teachers.batch.core import BatchStatus, BatchTeacher, LineResult

API_VERSION = "2023-06-01"
LENGTH = ("max_tokens", "model_context_window_exceeded")


def parse_result(line: dict[str, Any]) -> LineResult:
    """One line of a batch's results: the sample (thinking blocks inline as ``<think>...</think>``), or why none."""
    cid = str(line.get("custom_id"))
    result = line.get("result") if isinstance(line.get("result"), dict) else {}
    kind = result.get("type")
    if kind != "succeeded":
        error = result.get("error") if isinstance(result.get("error"), dict) else {}
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return LineResult(cid, error=f"{kind}: {inner.get('message', inner.get('type', '')) if inner else ''}".strip())
    message = result.get("message") if isinstance(result.get("message"), dict) else {}
    usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
    billed = (int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)) if usage else None
    blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    thinking = "".join(str(b.get("thinking", "")) for b in blocks if b.get("type") == "thinking")
    if thinking:
        text = f"{THINK_OPEN}{thinking}{THINK_CLOSE}{text}"
    reason = "length" if message.get("stop_reason") in LENGTH else "stop"
    gen = Generation(text, reason, billed[0] if billed else None, billed[1] if billed else None)
    return LineResult(cid, gens=[gen], usage=billed)


@register_teacher("anthropic_batch")
class AnthropicBatchTeacher(BatchTeacher):
    """Anthropic's Message Batches at ``base_url`` (``https://api.anthropic.com/v1``; ``$ANTHROPIC_API_KEY``): half
    the online price, within 24 h. Takes :class:`BatchTeacher`'s options (``poll_interval``, ``wait``...)."""

    default_api_key_env = "ANTHROPIC_API_KEY"
    example_url = "https://api.anthropic.com/v1"
    has_n: ClassVar[bool] = False
    provider_max_lines: ClassVar[int] = 100_000
    provider_max_bytes: ClassVar[int] = 256 * 1024 * 1024

    def headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": API_VERSION}

    def line(self, custom_id: str, request: Request, params: SamplingParams, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_tokens,
                                "messages": [{"role": "user", "content": request.prompt}],
                                "temperature": min(params.temperature, 1.0)}  # fmt: skip
        if params.top_p < 1.0:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        return {"custom_id": custom_id, "params": body}

    def submit(self, base: str, lines: list[dict[str, Any]], job: str) -> str:
        return str(self.api(base, "POST", "/messages/batches", {"requests": lines})["id"])

    def status(self, base: str, batch_id: str) -> BatchStatus:
        batch = self.api(base, "GET", f"/messages/batches/{batch_id}")
        raw = str(batch.get("processing_status"))
        counts = batch.get("request_counts") or {}
        detail = raw + (f" ({', '.join(f'{v} {k}' for k, v in counts.items() if v)})" if counts else "")
        return BatchStatus("ended" if raw == "ended" else "running", detail, batch)

    def results(self, base: str, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        url = status.info.get("results_url") or f"/messages/batches/{batch_id}/results"
        content = self.api(base, "GET", url, raw=True)
        for text in content.decode("utf-8").splitlines():
            if text.strip():
                yield parse_result(json.loads(text))
