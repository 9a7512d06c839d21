"""The ``transformers`` teacher: any local ``AutoModelForCausalLM`` (Hub id, folder, or a GGUF file loaded through
transformers), batched with left padding, sampling with ``num_return_sequences``, stop strings."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from ftcot_hf.teachers.base import Generation, Request, SamplingParams, Teacher, register_teacher

logger = logging.getLogger(__name__)


@register_teacher("transformers")
class TransformersTeacher(Teacher):
    """A local causal LM as teacher.

    Args:
        model: a Hub id or local folder (or a loaded ``PreTrainedModel``; then pass ``tokenizer`` and ``name``).
        tokenizer: a tokenizer, when ``model`` is an object.
        gguf_file: a GGUF file name inside ``model`` (transformers dequantises it on load).
        batch_size: prompts per forward batch (each with its ``n`` samples).
        name: the model identity for the cache (default: the id/folder given).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        gguf_file: str | None = None,
        batch_size: int = 8,
        name: str | None = None,
        dtype: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, str):
            kwargs = {"gguf_file": gguf_file} if gguf_file else {}
            self.model = name or (f"{model}:{gguf_file}" if gguf_file else model)
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, **kwargs)
            self.lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype or "auto", **kwargs)
        else:
            if tokenizer is None or name is None:
                raise ValueError("A model object needs its `tokenizer` and a `name` (the cache identity).")
            self.model, self.lm, self.tokenizer = name, model, tokenizer
        self.lm.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        groups: dict[tuple[SamplingParams, int], list[int]] = defaultdict(list)
        for pos, request in enumerate(requests):
            if request.chat:
                raise ValueError("The transformers teacher takes raw prompts (chat=False).")
            groups[request.params, request.n].append(pos)
        for (params, n), positions in groups.items():
            for start in range(0, len(positions), self.batch_size):
                batch = positions[start : start + self.batch_size]
                outputs = self._generate_batch([requests[p].prompt for p in batch], params, n)
                for pos, gens in zip(batch, outputs, strict=True):
                    yield pos, gens

    def _generate_batch(self, prompts: list[str], params: SamplingParams, n: int) -> list[list[Generation]]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.lm.device)
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "num_return_sequences": n,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
            torch.manual_seed(params.seed if params.seed is not None else 0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            out = self.lm.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        eos = self.tokenizer.eos_token_id
        results: list[list[Generation]] = []
        for i in range(len(prompts)):
            gens = []
            for j in range(n):
                ids = new[i * n + j].tolist()
                ended = eos is not None and eos in ids
                if ended:
                    ids = ids[: ids.index(eos)]
                while ids and ids[-1] == self.tokenizer.pad_token_id and self.tokenizer.pad_token_id != eos:
                    ids.pop()
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                stopped = False
                for s in params.stop:  # OpenAI semantics: the stop string is not part of the text
                    at = text.find(s)
                    if at != -1:
                        text, stopped = text[:at], True
                finish = "stop" if (ended or stopped or len(ids) < params.max_tokens) else "length"
                gens.append(Generation(text, finish, int(prompt_lens[i]), len(ids)))
            results.append(gens)
        return results
