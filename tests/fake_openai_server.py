"""A loopback server speaking the OpenAI wire protocol, for testing and benchmarking the ``openai`` teacher offline.

Why a real HTTP server rather than a mocked client: the teacher's retries, timeouts, connection reuse, concurrency
bound and fail-over all live in the HTTP layer, so only real sockets exercise them. Stdlib only
(:class:`~http.server.ThreadingHTTPServer`): each connection gets a thread, so the per-request latency (a sleep)
overlaps across concurrent requests exactly like a batching inference server's would.

Completions are deterministic functions of the request: sample ``j`` of prompt ``p`` is
``"Answer for <last 4 words of p> #j"`` (plus ``" seed=<s>"`` when a seed is sent). A "token" is a
whitespace-separated word, so ``max_tokens`` truncation is predictable (finish_reason ``"length"``).
``ignore_n=True`` behaves like llama.cpp's server: one choice (sample 0) whatever ``n`` asks for.

Faults are scripted: :attr:`FakeOpenAIServer.faults` is a list of directives consumed one per request, in arrival
order (``None`` = behave normally):

* ``("429", retry_after)`` / ``("503",)`` / ``("400",)`` ... -- that HTTP status with an OpenAI-style error body;
  the optional second element becomes a ``Retry-After`` header (seconds; ``None`` = no header).
* ``("timeout", seconds)`` -- sleep ``seconds`` (longer than the client's timeout), then answer normally.
* ``("delay", seconds)`` -- extra latency for this request, then answer normally.
* ``("malformed",)`` -- status 200, ``application/json``, but the body is not JSON.
* ``("empty_choices",)`` -- a well-formed response with ``"choices": []``.
* ``("few_choices",)`` -- one choice fewer than ``n``.
* ``("length",)`` -- a normal completion whose finish_reason is ``"length"``.
* ``("empty_content",)`` -- a well-formed completion whose every choice's text is ``""`` (finish_reason ``stop``).
* ``("null_content",)`` -- the same with ``null`` for the text (``text`` / ``message.content``).
* ``("echo", status)`` -- that HTTP status with an error body echoing what was sent: the ``Authorization`` header,
  the path with its query string and the raw body (as careless servers and proxies do: secrets must not leak
  through the client's messages).
* ``("drop",)`` -- close the connection without answering.
* ``("reasoning", field, content)`` -- a chat reply whose trace (the normal sample text) is in ``message[field]``
  (``reasoning_content`` as vLLM/SGLang/DeepSeek send it, or ``reasoning``) and whose visible ``content`` is
  ``content`` (may be None), as a reasoning parser splits a reasoning model's output; on ``/completions`` the
  trace goes in the choice's ``field`` and ``text`` becomes ``content``.

``text_for`` (an attribute, or a constructor argument) replaces :func:`sample_text`: a function of the prompt and
the sample index returning the completion text (e.g. the gold answer to a stage-2 prompt, so that a correctness
filter keeps rows), still cut by ``max_tokens`` as above.

``fault_for`` (an attribute, or a constructor argument) is a function of the request body returning a directive,
applied when no scripted fault is pending: faults that hit *particular* prompts whatever the arrival order (a 503
storm on some questions, ``lambda body: ("503",) if "coin" in body["prompt"] else None``). Set it to ``None`` to
heal the server.

A slow local server: ``tokens_per_s`` generates every reply at that rate (the time a reply's completion tokens take,
after ``latency``), in ``slots`` slots (requests beyond them queue, as on ``transformers serve`` or a one-slot
llama.cpp server); a client that disconnects is noticed while its request waits or generates, and the generation is
abandoned (as vLLM aborts it) and counted in ``aborted``; ``generated`` lists the prompts whose generation ran to
the end (a prompt twice there is a reply generated twice).

Use it as a context manager (``with FakeOpenAIServer(latency=0.05) as server: server.base_url``), as the pytest
fixture ``fake_openai_server``, or run it in its own process (``python tests/fake_openai_server.py --latency 0.05``
prints ``PORT <n>`` then serves until stdin closes), which keeps its CPU time off the client's GIL in benchmarks.
``GET /_stats`` returns the request count and the maximum number in flight, so a separate process can still be
checked.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    from tests.fake_http import JSONHandler, LoopbackServer, free_port
except ModuleNotFoundError:  # run as a script (`python tests/fake_openai_server.py`): tests/ is on the path
    from fake_http import JSONHandler, LoopbackServer, free_port  # type: ignore[no-redef]

Directive = tuple[Any, ...] | None
LatencySpec = float | Callable[[dict[str, Any]], float]
TextFor = Callable[[str, int], str]


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    body: dict[str, Any] | None
    """The parsed JSON body (``None`` when it was not JSON)."""
    time: float
    """``time.monotonic()`` at arrival."""
    authorization: str | None = None
    fault: Directive = None
    """The directive applied to it."""
    billed: tuple[int, int] | None = None
    """The usage (prompt, completion tokens) of the answer it got (None: no answer with a usage)."""


def sample_text(prompt: str, index: int, seed: int | None = None) -> str:
    """The (untruncated) completion the server produces for sample ``index`` of ``prompt``."""
    text = f"Answer for {' '.join(prompt.split()[-4:])} #{index}"
    return f"{text} seed={seed}" if seed is not None else text


@dataclass
class _State:
    faults: list[Directive] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    generated: list[str] = field(default_factory=list)
    aborted: int = 0


class _Handler(JSONHandler):
    # -- plumbing ------------------------------------------------------------------------------------------------
    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": status}}, headers)

    # -- endpoints -----------------------------------------------------------------------------------------------
    def _gone(self, wait: float) -> bool:
        """Has the client closed the connection? (waits up to ``wait`` seconds for a sign of it)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], wait)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _generate(self, fake: FakeOpenAIServer, body: dict[str, Any], tokens: int) -> bool:
        """Take a slot, then spend ``tokens / tokens_per_s`` seconds generating; False (aborted, nothing sent) when
        the client goes away meanwhile."""
        state = fake._state
        acquired = False
        try:
            while not (acquired := fake._slots.acquire(timeout=0.01)):
                if self._gone(0) or fake._stopping.is_set():
                    return self._abort(state)
            end = time.monotonic() + tokens / fake.tokens_per_s
            while (left := end - time.monotonic()) > 0:
                if self._gone(min(left, 0.02)) or fake._stopping.is_set():
                    return self._abort(state)
            with state.lock:
                state.generated.append(json.dumps(body.get("messages") or body.get("prompt")))
            return True
        finally:
            if acquired:
                fake._slots.release()

    def _abort(self, state: _State) -> bool:
        with state.lock:
            state.aborted += 1
        self.close_connection = True
        return False

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/") == "/_stats":
            with fake._state.lock:
                stats = {"requests": len(fake._state.requests), "max_in_flight": fake._state.max_in_flight}
            self._json(200, stats)
        elif self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": fake.model or "fake-model", "object": "model"}]})
        else:
            self._error(404, f"No route for GET {self.path}")

    def do_POST(self) -> None:
        fake = self.server.fake
        state = fake._state
        raw = self._body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with state.lock:
            fault = state.faults.pop(0) if state.faults else None
            if fault is None and fake.fault_for is not None and isinstance(body, dict):
                fault = fake.fault_for(body)
            record = RecordedRequest(self.path, body, time.monotonic(), self.headers.get("Authorization"), fault)
            state.requests.append(record)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._answer(fake, body, fault, record, raw)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(
        self, fake: FakeOpenAIServer, body: dict[str, Any] | None, fault: Directive, record: RecordedRequest,
        raw: bytes = b"",
    ) -> None:
        if fault and fault[0] == "echo":
            echoed = f"Authorization: {self.headers.get('Authorization')}; path: {self.path}; body: {raw.decode()}"
            return self._error(int(fault[1]), f"Rejected request. {echoed}")
        path = self.path.split("?")[0].rstrip("/")
        chat = path.endswith("/chat/completions")
        if not (chat or path.endswith("/completions")):
            return self._error(404, f"No route for POST {self.path}")
        if not isinstance(body, dict):
            return self._error(400, "Request body is not a JSON object.")
        if fake.model is not None and body.get("model") != fake.model:
            return self._error(404, f"The model `{body.get('model')}` does not exist.")
        latency = fake.latency(body) if callable(fake.latency) else fake.latency
        kind = str(fault[0]) if fault else "ok"
        if kind in ("timeout", "delay"):
            latency += float(fault[1])  # type: ignore[index]
        if latency > 0 and fake._stopping.wait(latency):
            self.close_connection = True
            return None
        if kind.isdigit():
            retry_after = fault[1] if len(fault) > 1 else None  # type: ignore[arg-type]
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return self._error(int(kind), f"Injected fault: HTTP {kind}.", headers)
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        if kind == "malformed":
            return self._send(200, b'{"id": "cmpl-broken", "choices": [')
        reply = _completion(body, chat, kind, fake.ignore_n, fake.text_for)
        if fake.tokens_per_s and not self._generate(fake, body, reply["usage"]["completion_tokens"]):
            return None
        if kind == "reasoning":
            field_name, content = fault[1], fault[2]  # type: ignore[index]
            for choice in reply["choices"]:
                part, text = (choice["message"], "content") if chat else (choice, "text")
                part[field_name], part[text] = part[text], content
        if kind == "null_content":
            for choice in reply["choices"]:
                (choice["message"] if chat else choice)["content" if chat else "text"] = None
        record.billed = (reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"])
        self._json(200, reply)
        return None


def _completion(
    body: dict[str, Any], chat: bool, kind: str, ignore_n: bool = False, text_for: TextFor | None = None
) -> dict[str, Any]:
    """An OpenAI-shaped (chat) completion object for ``body``."""
    n = 1 if ignore_n else int(body.get("n") or 1)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    seed = body.get("seed")
    if chat:
        prompts = ["\n".join(str(m.get("content", "")) for m in body.get("messages", []))]
    else:
        prompt = body.get("prompt", "")
        prompts = list(prompt) if isinstance(prompt, list) else [prompt]
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for p_idx, prompt in enumerate(prompts):
        prompt_tokens += len(str(prompt).split())
        for j in range(n):
            words = (text_for(str(prompt), j) if text_for else sample_text(str(prompt), j, seed)).split()
            if kind == "empty_content":
                words = []
            finish = "stop"
            if max_tokens is not None and len(words) > int(max_tokens):
                words, finish = words[: int(max_tokens)], "length"
            if kind == "length":
                finish = "length"
            completion_tokens += len(words)
            text = " ".join(words)
            index = p_idx * n + j
            if chat:
                message = {"role": "assistant", "content": text}
                choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
            else:
                choices.append({"index": index, "text": text, "finish_reason": finish, "logprobs": None})
    if kind == "empty_choices":
        choices = []
    elif kind == "few_choices":
        choices = choices[:-1]
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-fake",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FakeOpenAIServer(LoopbackServer):
    """An OpenAI-compatible server on ``127.0.0.1:<random port>``; see the module docstring for the behaviour.

    ``latency`` is seconds per request, or a function of the request body (e.g. slow for one prompt).
    ``model``: when set, requests for another model get a 404 (as vLLM answers).
    ``ignore_n``: answer every request with one choice, whatever its ``n`` (as llama.cpp's server does).
    """

    handler = _Handler

    def __init__(
        self,
        latency: LatencySpec = 0.0,
        faults: list[Directive] | None = None,
        model: str | None = None,
        port: int = 0,
        ignore_n: bool = False,
        fault_for: Callable[[dict[str, Any]], Directive] | None = None,
        text_for: TextFor | None = None,
        tokens_per_s: float | None = None,
        slots: int = 1,
    ):
        self.latency = latency
        self.fault_for = fault_for
        """Body -> directive, used when no scripted fault is pending (see the module docstring)."""
        self.text_for = text_for
        """(prompt, sample index) -> completion text, instead of :func:`sample_text` (see the module docstring)."""
        self.model = model
        self.ignore_n = ignore_n
        self.tokens_per_s = tokens_per_s
        """Generate each reply at this rate, in ``slots`` slots (see the module docstring); None: at once."""
        self._slots = threading.Semaphore(slots)
        self._state = _State(faults=list(faults or []))
        self._stopping = threading.Event()
        super().__init__(port)

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on latency/timeout faults
        super().stop()

    # -- what tests look at ----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to an OpenAI client (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def faults(self) -> list[Directive]:
        """Pending fault directives; append to script more."""
        return self._state.faults

    @property
    def billed(self) -> tuple[int, int]:
        """(prompt, completion) tokens of every answer sent with a usage: what a provider would bill."""
        usage = [r.billed for r in self.requests if r.billed is not None]
        return sum(u[0] for u in usage), sum(u[1] for u in usage)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every POST received so far (a snapshot)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def generated(self) -> list[str]:
        """The prompts (JSON) whose generation ran to the end, in order (``tokens_per_s`` servers)."""
        with self._state.lock:
            return list(self._state.generated)

    @property
    def aborted(self) -> int:
        """Generations abandoned because their client disconnected (``tokens_per_s`` servers)."""
        return self._state.aborted

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    @property
    def in_flight(self) -> int:
        return self._state.in_flight

    def reset(self) -> None:
        """Forget recorded requests, pending faults and the in-flight maximum."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.faults.clear()
            self._state.max_in_flight = self._state.in_flight


def dead_base_url() -> str:
    """A loopback ``base_url`` where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


try:  # the fixture is a convenience for test suites; the server itself (and the benchmark) needs only stdlib
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_openai_server() -> Iterator[FakeOpenAIServer]:
        """A fresh server per test (register with ``pytest_plugins = ["tests.fake_openai_server"]``)."""
        with FakeOpenAIServer() as server:
            yield server


def main(argv: list[str] | None = None) -> int:
    """Serve in this process until stdin closes (so a parent that dies takes the server with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--ignore_n", action="store_true", help="one choice per request, whatever n (llama.cpp)")
    args = parser.parse_args(argv)
    with FakeOpenAIServer(latency=args.latency, model=args.model, port=args.port, ignore_n=args.ignore_n) as server:
        print(f"PORT {server.port}", flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
