"""A loopback Batch API server for the ``openai_batch`` and ``anthropic_batch`` teachers: OpenAI's ``/v1/files``,
``/v1/batches`` and file content; Anthropic's ``/v1/messages/batches`` and results.

Its state (files, batches, how often each ``custom_id`` was submitted) is a JSON file, written after every change:
a server stopped and started again on the same file (and port) is the same provider, which is what a kill -9 of the
client followed by a re-run needs. Batches advance by polls, not by time: a batch ends on its ``polls``-th status
request (1: the first poll finds it ended), never while ``hold`` is set; so tests wait for events, never for clocks.

Faults are scripted: ``fates`` (consumed one per batch created): ``"expire"`` / ``"cancel"`` (the first half of the
lines answered, the rest not: status ``expired`` / ``cancelled``; Anthropic: ``expired`` / ``canceled`` results),
``"fail"`` (status ``failed``, no output; Anthropic: every line ``errored``), None (normal). ``line_fault(custom_id,
body, attempt)`` (``attempt``: 1 the first time that custom id is submitted) returns None, ``"error"`` (a line in
the error file / an ``errored`` result) or ``"500"`` (a line with status_code 500 in the output file).

Answers are :mod:`tests.fake_openai_server`'s (``text_for``, tokens = words, ``max_tokens`` cuts).
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fake_http import JSONHandler, LoopbackServer
from tests.fake_openai_server import _completion, sample_text

LineFault = Callable[[str, dict[str, Any], int], str | None]


class _Handler(JSONHandler):
    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self) -> None:
        self.server.fake._route(self, "GET", b"")

    def do_POST(self) -> None:
        self.server.fake._route(self, "POST", self._body())


class FakeBatchServer(LoopbackServer):
    """See the module docstring. ``model``: requests for another model get a 404 (when set)."""

    handler = _Handler

    def __init__(self, state_path: str | os.PathLike, *, port: int = 0, polls: int = 1, hold: bool = False,
                 fates: list[str | None] | None = None, line_fault: LineFault | None = None,
                 text_for: Callable[[str, int], str] | None = None, model: str | None = None):  # fmt: skip
        self.state_path = Path(state_path)
        self.polls, self.hold = polls, hold
        self.fates = list(fates or [])
        self.line_fault, self.text_for, self.model = line_fault, text_for, model
        self.polled = threading.Event()
        """Set at the first status request of a batch: by then the client has recorded it (it records, then waits)."""
        self.created = threading.Event()
        self.auth: list[str] = []
        """The credentials each request carried (Authorization or x-api-key)."""
        self._lock = threading.Lock()
        self.state: dict[str, Any] = (json.loads(self.state_path.read_text()) if self.state_path.exists()
                                      else {"files": {}, "batches": {}, "submitted": {}})  # fmt: skip
        super().__init__(port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- what tests look at ----------------------------------------------------------------------------------------
    @property
    def submitted(self) -> dict[str, int]:
        """custom_id -> how many times it was submitted (across restarts)."""
        with self._lock:
            return dict(self.state["submitted"])

    @property
    def batches(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(b) for b in self.state["batches"].values()]

    def lines_of(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return self._lines(batch)

    # -- the API ---------------------------------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    def _route(self, h: _Handler, method: str, raw: bytes) -> None:
        self.auth.append(h.headers.get("Authorization") or h.headers.get("x-api-key") or "")
        path = h.path.split("?")[0].rstrip("/")
        with self._lock:
            if method == "POST" and path == "/v1/files":
                return self._upload(h, raw)
            if method == "POST" and path == "/v1/batches":
                return self._create(h, json.loads(raw), "openai")
            if method == "POST" and path == "/v1/messages/batches":
                return self._create(h, json.loads(raw), "anthropic")
            if method == "GET" and path == "/v1/batches":
                return h._json(200, {"object": "list", "data": [self._public(b) for b in self.state["batches"].values()
                                                                if b["kind"] == "openai"]})  # fmt: skip
            m = re.fullmatch(r"/v1/(?:messages/)?batches/([\w-]+)(/results|/cancel)?", path)
            if m and method == "GET" and not m.group(2):
                return self._poll(h, m.group(1))
            if m and method == "POST" and m.group(2) == "/cancel":
                batch = self.state["batches"][m.group(1)]
                batch["fate"] = "cancel"
                return h._json(200, self._public(batch))
            if m and method == "GET" and m.group(2) == "/results":
                batch = self.state["batches"].get(m.group(1))
                if batch is None or batch["status"] != "ended":
                    return h._error(404, "no results")
                return h._send(200, batch["results"].encode(), {"Content-Type": "application/binary"})
            m = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
            if m and method == "GET" and m.group(1) in self.state["files"]:
                return h._send(200, self.state["files"][m.group(1)].encode(), {"Content-Type": "application/binary"})
        return h._error(404, f"No route for {method} {h.path}")

    def _upload(self, h: _Handler, raw: bytes) -> None:
        boundary = h.headers.get("Content-Type", "").partition("boundary=")[2].encode()
        fields: dict[str, bytes] = {}
        for part in raw.split(b"--" + boundary):
            head, _, body = part.partition(b"\r\n\r\n")
            name = re.search(rb'name="([^"]+)"', head)
            if name:
                fields[name.group(1).decode()] = body[:-2] if body.endswith(b"\r\n") else body
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return h._error(400, "purpose must be batch, with a file")
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        self.state["files"][file_id] = fields["file"].decode()
        self._save()
        return h._json(200, {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(fields["file"])})

    def _create(self, h: _Handler, body: dict[str, Any], kind: str) -> None:
        if kind == "openai":
            if body.get("input_file_id") not in self.state["files"] or body.get("completion_window") != "24h":
                return h._error(400, "input_file_id unknown or completion_window not 24h")
            lines = [json.loads(x) for x in self.state["files"][body["input_file_id"]].splitlines() if x.strip()]
            if any(x.get("url") != body.get("endpoint") or x.get("method") != "POST" for x in lines):
                return h._error(400, "every line must POST to the batch's endpoint")
        else:
            lines = body.get("requests") or []
            if h.headers.get("anthropic-version") is None:
                return h._error(400, "anthropic-version header missing")
        for x in lines:
            self.state["submitted"][x["custom_id"]] = self.state["submitted"].get(x["custom_id"], 0) + 1
        prefix = "batch" if kind == "openai" else "msgbatch"
        batch = {"id": f"{prefix}_{uuid.uuid4().hex[:12]}", "kind": kind, "status": "in_progress", "polls": 0,
                 "fate": self.fates.pop(0) if self.fates else None, "metadata": body.get("metadata") or {},
                 "endpoint": body.get("endpoint"), "input_file_id": body.get("input_file_id"),
                 "requests": lines if kind == "anthropic" else None}  # fmt: skip
        self.state["batches"][batch["id"]] = batch
        self._save()
        self.created.set()
        return h._json(200, self._public(batch))

    def _lines(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        if batch["kind"] == "anthropic":
            return batch["requests"]
        return [json.loads(x) for x in self.state["files"][batch["input_file_id"]].splitlines() if x.strip()]

    def _poll(self, h: _Handler, batch_id: str) -> None:
        batch = self.state["batches"].get(batch_id)
        if batch is None:
            return h._error(404, f"No batch {batch_id}")
        self.polled.set()
        if batch["status"] == "in_progress" and not self.hold:
            batch["polls"] += 1
            if batch["polls"] >= self.polls or batch["fate"] == "cancel":
                self._end(batch)
            self._save()
        return h._json(200, self._public(batch))

    def _end(self, batch: dict[str, Any]) -> None:
        lines, fate = self._lines(batch), batch["fate"]
        answered = len(lines) if fate in (None, "fail") else len(lines) // 2
        out, errors = [], []
        seen: dict[str, int] = {}
        for i, x in enumerate(lines):
            cid = x["custom_id"]
            attempt = self.state["submitted"].get(cid, 1)
            body = x["body"] if batch["kind"] == "openai" else x["params"]
            fault = "error" if fate == "fail" and batch["kind"] == "anthropic" else None
            if fault is None and self.line_fault is not None:
                fault = self.line_fault(cid, body, attempt)
            if batch["kind"] == "openai":
                if fate == "fail" or i >= answered:
                    continue
                out_line, err_line = self._openai_line(cid, body, fault)
                (out if out_line else errors).append(out_line or err_line)
            else:
                prompt = body["messages"][0]["content"]
                seen[prompt] = seen.get(prompt, -1) + 1
                out.append(self._anthropic_line(cid, body, fault, seen[prompt], i >= answered and fate))
        if batch["kind"] == "openai":
            for name, content in (("output_file_id", out), ("error_file_id", errors)):
                if content:
                    file_id = f"file-{uuid.uuid4().hex[:12]}"
                    self.state["files"][file_id] = "".join(json.dumps(x) + "\n" for x in content)
                    batch[name] = file_id
            batch["status"] = {"expire": "expired", "cancel": "cancelled", "fail": "failed"}.get(fate, "completed")
            if fate == "fail":
                batch["errors"] = {"object": "list", "data": [{"code": "invalid", "message": "injected failure"}]}
        else:
            batch["status"] = "ended"
            batch["results"] = "".join(json.dumps(x) + "\n" for x in out)

    def _openai_line(self, cid: str, body: dict[str, Any], fault: str | None) -> tuple[dict | None, dict | None]:
        if fault == "error":
            error = {"status_code": 400, "request_id": "req", "body": {"error": {"message": "injected line error"}}}
            return None, {"id": "r", "custom_id": cid, "response": error, "error": None}
        if fault == "500":
            response = {"status_code": 500, "request_id": "req", "body": {"error": {"message": "injected 500"}}}
            return {"id": "r", "custom_id": cid, "response": response, "error": None}, None
        if self.model is not None and body.get("model") != self.model:
            response = {"status_code": 404, "request_id": "req", "body": {"error": {"message": "no such model"}}}
            return None, {"id": "r", "custom_id": cid, "response": response, "error": None}
        reply = _completion(body, "messages" in body, "ok", False, self.text_for)
        return {"id": "r", "custom_id": cid, "response": {"status_code": 200, "request_id": "req", "body": reply},
                "error": None}, None  # fmt: skip

    def _anthropic_line(self, cid: str, body: dict[str, Any], fault: str | None, index: int,
                        unanswered: str | None) -> dict[str, Any]:  # fmt: skip
        if unanswered:
            return {"custom_id": cid, "result": {"type": {"expire": "expired", "cancel": "canceled"}[unanswered]}}
        if fault:
            error = {"type": "error", "error": {"type": "api_error", "message": "injected line error"}}
            return {"custom_id": cid, "result": {"type": "errored", "error": error}}
        prompt = body["messages"][0]["content"]
        words = (self.text_for(prompt, index) if self.text_for else sample_text(prompt, index)).split()
        stop = "end_turn"
        if len(words) > body["max_tokens"]:
            words, stop = words[: body["max_tokens"]], "max_tokens"
        message = {"id": "msg", "type": "message", "role": "assistant", "model": body["model"],
                   "content": [{"type": "text", "text": " ".join(words)}], "stop_reason": stop,
                   "usage": {"input_tokens": len(prompt.split()), "output_tokens": len(words)}}  # fmt: skip
        return {"custom_id": cid, "result": {"type": "succeeded", "message": message}}

    def _public(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch["kind"] == "anthropic":
            ended = batch["status"] == "ended"
            return {
                "id": batch["id"],
                "type": "message_batch",
                "processing_status": batch["status"],
                "request_counts": {"processing": 0 if ended else len(batch["requests"])},
                "results_url": f"{self.base_url}/messages/batches/{batch['id']}/results" if ended else None,
            }
        keys = ("id", "status", "endpoint", "input_file_id", "output_file_id", "error_file_id", "metadata", "errors")
        return {"object": "batch", "completion_window": "24h", **{k: batch.get(k) for k in keys}}
