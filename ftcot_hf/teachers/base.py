"""The teacher interface: prompts and sampling parameters in, completions (with finish reason and token counts) out.

A backend implements :meth:`Teacher.generate`, which yields results *as they complete* (in any order) so the request
cache can store each one the moment it arrives: a crash loses only what was in flight. A backend is a class with a
``from_config(*, model, base_url, tasks, data_dir, **kwargs)`` constructor, listed in :data:`TEACHERS` (lazily, by
``"module:Class"``) or registered with :func:`register_teacher`; adding a backend is adding one module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.registry import Registry


class TeacherError(FtcotError):
    """A teacher could not produce a completion (unreachable server, unrecorded prompt, bad response...)."""


class RequestFailedError(TeacherError):
    """One request failed for good (its retries spent: 5xx storms, timeouts, malformed answers): the other requests
    of a run can still be answered, so a teacher with ``keep_going`` yields a :class:`FailedRequest` for it."""


class MissingRecordingError(TeacherError, KeyError):
    """The replay teacher has no recording for a prompt."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Every field is part of the request-cache key."""

    temperature: float = 0.0
    """0 = greedy."""
    max_tokens: int = 128
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def key(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"stop": list(self.stop)}


@dataclass(frozen=True)
class Request:
    """``n`` samples of one prompt. ``first_index`` numbers them (sample j is ``first_index + j``), so a request
    for samples 3..7 of a prompt can be made after 0..2 are cached."""

    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    first_index: int = 0
    chat: bool = False
    """Send the prompt as one user message of a chat API instead of a raw completion (where the backend can)."""


@dataclass(frozen=True)
class Generation:
    """One completion."""

    text: str
    finish_reason: str
    """``"stop"`` (stop string, EOS, natural end) or ``"length"`` (hit max_tokens)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class BudgetExhaustedError(TeacherError):
    """A request was not sent: the teacher's :class:`RequestBudget` is spent."""


class FailedRequest(list):
    """What a teacher with ``keep_going`` yields for a request that failed for good: no generations (an empty list,
    so a consumer that does not know about it just sees no samples) and the ``error`` (a message without keys).
    The request cache never stores one, so a re-run asks for exactly these requests again. ``sent`` is False for a
    request that was never sent because the budget was spent (:class:`BudgetExhaustedError`)."""

    def __init__(self, error: TeacherError, sent: bool = True):
        super().__init__()
        self.error = error
        self.sent = sent

    def __reduce__(self) -> tuple[Any, ...]:  # through a worker process's pipe
        return (FailedRequest, (self.error, self.sent))

    def __repr__(self) -> str:
        return f"FailedRequest({str(self.error)!r}{'' if self.sent else ', sent=False'})"


def is_failure(gens: Sequence[Generation]) -> bool:
    """Is ``gens`` a :class:`FailedRequest` (a request that failed for good, or was not sent) rather than its
    generations?"""
    return isinstance(gens, FailedRequest)


def is_unsent(gens: Sequence[Generation]) -> bool:
    """Is ``gens`` a request the teacher did not send because its budget was spent?"""
    return isinstance(gens, FailedRequest) and not gens.sent


@dataclass
class RequestBudget:
    """A hard limit on what a teacher sends, checked before every HTTP request leaves the process (retries
    included: each is a request the server receives and may bill):

    * ``max_requests``: at most this many HTTP requests are ever sent (those in flight count);
    * ``max_cost`` (with prices): a request is sent only when its *worst case* (:meth:`worst_case`: its prompt's
      token bound plus ``max_tokens`` for every sample asked, at the given prices), added to what was billed and the
      worst cases of the requests in flight, stays within it. A reply's real usage replaces its worst case when it
      comes back; a reply without usage is charged its worst case.

    Replies served by the request cache never reach the teacher, so they cost nothing against it."""

    max_requests: int | None = None
    max_cost: float | None = None
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    requests: int = 0
    """HTTP requests admitted so far (sent, or in flight)."""
    cost: float = 0.0
    """$ billed so far (of the replies received)."""
    reserved: float = 0.0
    """$ held for the requests in flight (their worst cases)."""
    reason: str | None = None
    """Why it stopped admitting requests (None while it admits them)."""

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok) / 1e6

    def worst_case(self, prompt_tokens_bound: int, max_tokens: int, samples: int) -> float:
        """$ a request may cost at most: the prompt billed once, ``max_tokens`` for each sample."""
        return self.price(prompt_tokens_bound, max_tokens * samples)

    def charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Count a billed reply's usage."""
        self.cost += self.price(prompt_tokens, completion_tokens)

    def admit(self, worst: float = 0.0) -> bool:
        """May one more HTTP request (whose worst case is ``worst`` $) be sent? Counts it and holds ``worst`` when
        it may (the caller :meth:`release` s the hold once the reply is in); records why not when it may not."""
        if self.reason is None:
            if self.max_requests is not None and self.requests >= self.max_requests:
                self.reason = f"max_requests {self.max_requests} reached ({self.requests} requests sent)"
            elif self.max_cost is not None and self.cost + self.reserved + worst > self.max_cost:
                held = f", ${self.reserved:.4f} held by requests in flight" if self.reserved else ""
                self.reason = (
                    f"max_cost ${self.max_cost:g} reached (${self.cost:.4f} billed{held}; the next request could "
                    f"cost up to ${worst:.4f})"
                )
        if self.reason is not None:
            return False
        self.requests += 1
        self.reserved += worst
        return True

    def release(self, worst: float) -> None:
        """The reply of a request admitted with ``worst`` is in (or it failed): its hold ends."""
        self.reserved = max(0.0, self.reserved - worst)

    def refusal(self) -> FailedRequest:
        """What a teacher yields for a request the budget refused."""
        return FailedRequest(BudgetExhaustedError(f"not sent: the teacher's budget is spent ({self.reason})"), False)


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Reasoned:
    """A reasoning model's reply split at its trace: ``trace`` (None: the reply has no trace), the visible
    ``answer`` after it, and ``complete`` (False when the trace never closed: cut by the token limit)."""

    trace: str | None
    answer: str
    complete: bool


def split_reasoning(text: str) -> Reasoned:
    """Split ``"<think>trace</think>answer"`` (a leading ``<think>`` may be missing, as when a chat template opens
    it in the prompt). A ``<think>`` without its ``</think>`` is an incomplete trace; text with no tags has none."""
    close = text.find(THINK_CLOSE)
    if close == -1:
        start = text.find(THINK_OPEN)
        if start == -1:
            return Reasoned(None, text, True)
        return Reasoned(text[start + len(THINK_OPEN) :].strip(), "", False)
    start = text.find(THINK_OPEN, 0, close)
    trace = text[(start + len(THINK_OPEN)) if start != -1 else 0 : close]
    return Reasoned(trace.strip(), text[close + len(THINK_CLOSE) :].strip(), True)


def is_unusable(gen: Generation | None) -> bool:
    """Whether a reply carries nothing to learn from: no text (empty, null, cut to nothing: whitespace only) or a
    closed reasoning trace with no visible answer after it. The one place this is decided: such a cached reply is
    asked again on a re-run (``ftcot teach --retry_unusable``), since a server that sent it may have been failing.
    A trace that never closed is not here: it is the reply of a token limit, and asked again it is cut again."""
    if gen is None or not isinstance(gen.text, str) or not gen.text.strip():
        return True
    parts = split_reasoning(gen.text)
    return parts.trace is not None and parts.complete and not parts.answer.strip()


class Teacher:
    """Base class of teacher backends."""

    max_concurrency: int | None = None
    """Requests the backend keeps in flight at most (HTTP backends); None: it takes a whole batch at once."""

    backend: str = ""
    """Registry name of the backend (``replay``, ``transformers``, ``openai``)."""
    model: str = ""
    """Model identity, part of the cache key (a Hub id, a URL+model name, a recording's name)."""
    keep_going: bool = False
    """Set by the caller: a request that fails for good (:class:`RequestFailedError`, its retries spent) is yielded
    as a :class:`FailedRequest` instead of ending the whole call; the other requests go on. Backends that cannot tell
    one failed request from a broken setup (a bad key, a missing model: still raised) ignore it."""

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        """Yield ``(position in requests, n generations)`` for every request, in completion order (with
        ``keep_going``, a request that failed for good yields a :class:`FailedRequest` instead)."""
        raise NotImplementedError

    supports_budget: bool = False
    """Does the backend honour :attr:`budget` (the HTTP backends, whose requests are billed)?"""
    budget: RequestBudget | None = None
    """Set by the caller (``ftcot teach --max_requests/--max_cost``): a request the budget refuses is not sent and
    is yielded as a :class:`FailedRequest` with ``sent=False`` (whatever ``keep_going``)."""

    def identity(self) -> dict[str, Any]:
        """What makes two teachers interchangeable for the cache (never a secret)."""
        return {"backend": self.backend, "model": self.model}

    def counters(self) -> dict[str, int]:
        """What the backend did so far, as monotone counts (the ledger diffs them around each stage): for HTTP
        backends ``retries``, ``timeouts``, ``failed_billed`` (replies the server billed that could not be used),
        ``billed_prompt_tokens``... Empty for a backend that counts nothing."""
        return {}

    def live(self) -> dict[str, Any]:
        """What the backend is doing now, for a progress bar: ``in_flight``, ``limit`` (the bound on requests in
        flight), ``timeouts``, ``retries``, ``tokens_per_s`` (None: unknown). Empty for a backend without requests."""
        return {}

    def close(self) -> None:
        """Release connections/models."""

    recorded: bool = False
    """Does the backend replay completions recorded earlier (no model is asked)?"""
    needs_model: bool = False
    """Does the backend need ``--teacher_model`` (:meth:`check_flags` says so before any work)?"""
    needs_base_url: bool = False
    """Does the backend need ``--base_url``?"""
    model_help: str = "a model id / served model name"
    """What ``--teacher_model`` names for this backend (in the one-line error of :meth:`check_flags`)."""

    @classmethod
    def check_flags(cls, *, model: str | None, base_url: Any) -> None:
        """Refuse, in one line naming the flag, a teach config this backend cannot work with, before any work (``ftcot
        run`` checks it before its first stage). A backend with other needs overrides it."""
        if cls.needs_model and not model:
            raise FtcotError(f"The {cls.backend} teacher needs --teacher_model ({cls.model_help}).")
        if cls.needs_base_url and not base_url:
            raise FtcotError(f"The {cls.backend} teacher needs --base_url (e.g. http://localhost:8000/v1).")

    @classmethod
    def option_types(cls) -> dict[str, Any] | None:
        """The backend's options (``--teacher_kwargs`` keys) and their types: the one declaration that both the check
        of unknown keys and the check of value types read. By default the keyword parameters of ``from_config`` (or of
        the constructor, when ``from_config`` passes ``**kwargs`` through to it); None: the options are open-ended
        (the backend checks them itself)."""
        import inspect
        import typing

        function: Any = cls.from_config  # type: ignore[attr-defined]
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(function).parameters.values()):
            function = cls.__init__
        params = inspect.signature(function).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # noqa: BLE001 -- a hint naming a type imported only for type checkers: no opinion
            hints = {}
        given = ("self", "cls", "model", "base_url", "tasks", "data_dir")  # every caller passes them: not options
        return {p.name: hints.get(p.name, Any) for p in params
                if p.name not in given and p.kind is not p.VAR_POSITIONAL}  # fmt: skip


def unknown_options(label: str, given: Iterable[str], accepted: Sequence[str], where: str = "") -> str | None:
    """The one line that names the options a backend does not take, the closest valid one and all of them (None:
    every one is known): what ``build_teacher`` says of ``--teacher_kwargs``, and a backend's ``from_config`` of a
    direct caller's keywords. ``where`` follows the unknown names (`` (--teacher_kwargs)``)."""
    unknown = sorted(set(given) - set(accepted))
    if not unknown:
        return None
    import difflib

    close = difflib.get_close_matches(unknown[0], list(accepted), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"The {label} teacher takes no option {', '.join(unknown)}{hint}{where}; it takes: "
            f"{', '.join(accepted) or 'none'}.")  # fmt: skip


TEACHERS: Registry[type[Teacher]] = Registry(
    "teacher backend",
    {
        "replay": "ftcot_hf.teachers.replay:ReplayTeacher",
        "transformers": "ftcot_hf.teachers.transformers:TransformersTeacher",
        "openai": "ftcot_hf.teachers.http.openai:OpenAITeacher",
        "openai_batch": "ftcot_hf.teachers.batch.openai:OpenAIBatchTeacher",
        "anthropic_batch": "ftcot_hf.teachers.batch.anthropic:AnthropicBatchTeacher",
        "vllm": "ftcot_hf.teachers.vllm:VLLMTeacher",
    },
    base=Teacher,
    classes=True,
)
"""Backend name -> Teacher class (built with its ``from_config``); imported on first use."""


def register_teacher(name: str) -> Callable[[type[Teacher]], type[Teacher]]:
    """Class decorator: the backend called ``name`` (``--teacher name``). The built-in backends are listed in
    :data:`TEACHERS` already; registering them again when their module loads replaces the lazy entry."""

    def wrap(cls: type[Teacher]) -> type[Teacher]:
        TEACHERS.check(cls, name)  # before `backend` is set on it
        cls.backend = name
        TEACHERS.register(name, cls, replace=True)
        return cls

    return wrap
