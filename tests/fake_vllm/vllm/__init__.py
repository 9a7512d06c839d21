"""A small stand-in for the ``vllm`` package (the part ``ftcot_hf.teachers.vllm`` uses), for CI where vLLM cannot be
installed. Put ``tests/fake_vllm`` first on ``sys.path`` (spawned processes inherit it). ``LLM`` and
``SamplingParams`` record what they receive (``LLM.instances``, ``SamplingParams.made``).

The model: a "token" is a word. A prompt containing ``say: w1 w2 ...`` continues with those words; any other prompt
with ``t<j>_0 t<j>_1 ...`` for choice ``j`` (``whoami``: the process id and
``$CUDA_VISIBLE_DEVICES`` of the engine) (``s<seed>:`` before each word when sampled with a seed). ``max_tokens``
cuts it (finish ``length``), a stop string cuts before itself (``stop``), else it ends (``stop``). Prompts longer than
``max_model_len`` words (default 64) are refused on enqueue with vLLM 0.32's ``VLLMValidationError``
(not a ValueError). The engine finishes requests in
reverse order of submission, so a consumer that assumes submission order is caught.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from vllm.exceptions import VLLMValidationError


class SamplingParams:
    made: list[SamplingParams] = []

    def __init__(self, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, max_tokens: int | None = 16,
                 stop: list[str] | None = None, seed: int | None = None, **others: Any):  # fmt: skip
        if others:
            raise TypeError(f"unexpected SamplingParams arguments {sorted(others)}")
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens
        self.stop, self.seed = stop, seed
        SamplingParams.made.append(self)


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


def complete(prompt: str, params: SamplingParams) -> list[CompletionOutput]:
    said = re.search(r"say:((?: (?!<\|)\S+)+)", prompt)  # up to a chat template's next tag
    if "whoami" in prompt:  # which engine process answered, on which devices (the data-parallel test)
        said = re.match("(.*)", f" pid{os.getpid()} dev{os.environ.get('CUDA_VISIBLE_DEVICES')}")
    choices = []
    for j in range(params.n):
        words = said.group(1).split() if said else [f"t{j}_{k}" for k in range(40)]
        if params.temperature > 0 and params.seed is not None:
            words = [f"s{params.seed}:{w}" for w in words]
        reason = "stop"
        if params.max_tokens is not None and len(words) > params.max_tokens:
            words, reason = words[: params.max_tokens], "length"
        text = " " + " ".join(words)
        for stop in params.stop or ():
            at = text.find(stop)
            if at != -1:
                text, reason = text[:at], "stop"
                words = text.split()
        choices.append(CompletionOutput(j, text, list(range(len(words))), reason))
    return choices


class _Engine:
    def __init__(self) -> None:
        self.queue: list[RequestOutput] = []
        self.aborted: list[str] = []
        self.steps = 0

    def has_unfinished_requests(self) -> bool:
        return bool(self.queue)

    def step(self) -> list[RequestOutput]:
        self.steps += 1
        return [self.queue.pop()] if self.queue else []  # the last submitted finishes first

    def abort_request(self, request_ids: list[str], internal: bool = False) -> None:
        self.aborted += list(request_ids)
        self.queue = [o for o in self.queue if o.request_id not in set(request_ids)]


class OldLLM:
    """A vLLM without ``enqueue``: one blocking ``generate``/``chat`` call (``LLM`` adds the queue)."""

    instances: list[OldLLM] = []
    chat_template: str | None = "<|user|> {content} <|assistant|>"

    def __init__(self, model: str, **kwargs: Any):
        if int(kwargs.get("data_parallel_size", 1)) > 1:
            raise ValueError("LLM(data_parallel_size=2) is not supported for single-process usage and may hang.")
        if not os.path.isdir(model) and model.startswith("missing/"):
            raise OSError(f"{model} is not a local folder and is not a valid model identifier\nsecond line")
        self.model, self.kwargs = model, kwargs
        self.max_model_len = kwargs.get("max_model_len") or 64
        self.llm_engine = _Engine()
        self.ids = itertools.count()
        self.pid = os.getpid()
        self.devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        OldLLM.instances.append(self)

    def get_tokenizer(self) -> Any:
        return object()

    def _render(self, messages: list[dict[str, str]]) -> str:
        if self.chat_template is None:
            raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set")
        return "".join(self.chat_template.format(content=m["content"]) for m in messages)

    def _outputs(self, prompts: list[str], params: list[SamplingParams]) -> list[RequestOutput]:
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            if len(prompt.split()) > self.max_model_len:
                raise VLLMValidationError(f"The decoder prompt (length {len(prompt.split())}) is longer than the "
                                          f"maximum model length of {self.max_model_len}.")  # fmt: skip
            outputs.append(RequestOutput(str(next(self.ids)), prompt, list(range(len(prompt.split()))),
                                         complete(prompt, p)))  # fmt: skip
        return outputs

    def generate(self, prompts: list[str], sampling_params: list[SamplingParams], use_tqdm: bool = True) -> list:
        return self._outputs(list(prompts), list(sampling_params))

    def chat(self, messages: list[list[dict[str, str]]], sampling_params: list[SamplingParams],
             use_tqdm: bool = True) -> list:  # fmt: skip
        return self._outputs([self._render(m) for m in messages], list(sampling_params))


class LLM(OldLLM):
    def enqueue(self, prompts: list[str], sampling_params: list[SamplingParams], use_tqdm: bool = True) -> list[str]:
        outputs = self._outputs(list(prompts), list(sampling_params))  # all or none, as vLLM (it aborts the rest)
        self.llm_engine.queue += outputs
        return [f"{o.request_id}-{uuid.uuid4().hex[:8]}" for o in outputs]  # vLLM's internal ids, as 0.32 returns

    def enqueue_chat(self, messages: list[list[dict[str, str]]], sampling_params: list[SamplingParams],
                     use_tqdm: bool = True) -> list[str]:  # fmt: skip
        return self.enqueue([self._render(m) for m in messages], sampling_params)
