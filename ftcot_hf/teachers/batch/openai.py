"""The ``openai_batch`` teacher: OpenAI's Batch API (and what speaks its JSONL: vLLM's ``run_batch``). This module is
only the API: a line is ``{"custom_id", "method": "POST", "url": "/v1/(chat/)completions", "body"}``, uploaded through
``/v1/files`` (purpose ``batch``), run by ``/v1/batches`` (``completion_window`` 24h), read back from the output
and error files. The state machine (record, poll, collect, resubmit) is :class:`BatchTeacher`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ftcot_hf.teachers.base import Generation, Request, SamplingParams, register_teacher
from ftcot_hf.teachers.batch.client import multipart
from ftcot_hf.teachers.batch.core import BatchStatus, BatchTeacher, LineResult
from ftcot_hf.teachers.http.openai import request_body, with_reasoning
from ftcot_hf.teachers.http.transport import normalize_finish_reason

STATES = {"completed": "ended", "expired": "expired", "cancelled": "cancelled", "failed": "failed"}
"""OpenAI's final batch statuses (the others, validating/in_progress/finalizing/cancelling, are running)."""


def parse_line(line: dict[str, Any], max_tokens: int | None = None) -> LineResult:
    """One line of an output or error file: its choices in order (prompt tokens on the first), or why it has none."""
    cid = str(line.get("custom_id"))
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    billed = None
    if usage is not None and isinstance(usage.get("completion_tokens"), int):
        billed = (int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]))
    status = response.get("status_code")
    error = line.get("error") or body.get("error")
    if error or status != 200:
        while isinstance(error, dict) and isinstance(error.get("error"), dict):  # vLLM nests {"error": {...}}
            error = error["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        return LineResult(cid, error=f"HTTP {status}: {message}" if status else str(message), usage=billed)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return LineResult(cid, error="the answer has no choices", usage=billed)
    choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    k, total = len(choices), (billed[1] if billed else None)
    gens = []
    for i, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice.get("message"), dict) else None
        text = with_reasoning(message.get("content"), message) if message else with_reasoning(choice.get("text"),
                                                                                               choice)  # fmt: skip
        tokens = None if total is None else total // k + (1 if i < total % k else 0)
        reason = normalize_finish_reason(choice.get("finish_reason"), tokens if k == 1 else None, max_tokens or 2**62)
        gens.append(Generation(text, reason, (billed[0] if billed else None) if i == 0 else 0, tokens))
    return LineResult(cid, gens=gens, usage=billed)


@register_teacher("openai_batch")
class OpenAIBatchTeacher(BatchTeacher):
    """OpenAI's Batch API at ``base_url`` (``https://api.openai.com/v1``; ``$OPENAI_API_KEY``): half the online
    price, answers within 24 h. Takes :class:`BatchTeacher`'s options (``poll_interval``, ``wait``...)."""

    default_api_key_env = "OPENAI_API_KEY"
    example_url = "https://api.openai.com/v1"

    def line(self, custom_id: str, request: Request, params: SamplingParams, n: int) -> dict[str, Any]:
        path = "/v1/chat/completions" if request.chat else "/v1/completions"
        return {"custom_id": custom_id, "method": "POST", "url": path,
                "body": request_body(self.model, request, params, n)}  # fmt: skip

    def submit(self, base: str, lines: list[dict[str, Any]], job: str) -> str:
        content = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode()
        data, kind = multipart({"purpose": "batch"}, "file", f"{job}.jsonl", content)
        uploaded = self.api(base, "POST", "/files", data=data, content_type=kind)
        batch = self.api(
            base,
            "POST",
            "/batches",
            {
                "input_file_id": uploaded["id"],
                "endpoint": lines[0]["url"],
                "completion_window": "24h",
                "metadata": {"ftcot_job": job},
            },
        )
        return str(batch["id"])

    def find(self, base: str, job: str) -> str | None:
        listed = self.api(base, "GET", "/batches?limit=100")
        for batch in listed.get("data") or []:
            if (batch.get("metadata") or {}).get("ftcot_job") == job:
                return str(batch["id"])
        return None

    def status(self, base: str, batch_id: str) -> BatchStatus:
        batch = self.api(base, "GET", f"/batches/{batch_id}")
        raw = str(batch.get("status"))
        detail = raw
        errors = (batch.get("errors") or {}).get("data") if isinstance(batch.get("errors"), dict) else None
        if errors:
            detail += f" ({'; '.join(str(e.get('message', e)) for e in errors[:3])})"
        return BatchStatus(STATES.get(raw, "running"), detail, batch)

    def results(self, base: str, batch_id: str, status: BatchStatus) -> Iterator[LineResult]:
        for name in ("output_file_id", "error_file_id"):
            file_id = status.info.get(name)
            if not file_id:
                continue
            content = self.api(base, "GET", f"/files/{file_id}/content", raw=True)
            for text in content.decode("utf-8").splitlines():
                if text.strip():
                    yield parse_line(json.loads(text))
