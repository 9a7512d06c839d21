"""The ``transformers`` teacher: a local model loaded like a student (a Hub id, a folder, a ``.gguf`` file, or the
embedded ``smollm2-135m-instruct``; see :func:`ftcot_hf.students.loading.load_student`), generating through the
evaluation's own loop (:func:`ftcot_hf.students.generation.generate_completions`): batched with left padding, a
finished row leaves the batch and the KV cache at once, ``n`` samples per prompt, temperature / top-p sampling,
stop strings.

Sampling: each row has its own random generator, seeded from the request's ``seed`` (0 when unset), its
``first_index`` (so samples 3..7 asked for after 0..2 are new samples, not the same draws again), the prompt's place
in its batch and the sample number. Greedy completions do not depend on the batching.

Finish reasons follow the OpenAI API: ``"stop"`` (a stop string, which is left out of the text, or EOS) or
``"length"`` (``max_tokens`` reached, or the model's position limit). ``completion_tokens`` counts the tokens
generated, stop-string tokens included, EOS excluded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.generation import generate_completions
from ftcot_hf.students.loading import load_student
from ftcot_hf.teachers.base import Generation, Request, SamplingParams, Teacher, register_teacher

logger = logging.getLogger(__name__)

MODEL_HELP = "a Hub id, a local folder, a .gguf file or 'smollm2-135m-instruct' (the embedded SmolLM2-135M-Instruct)"


@register_teacher("transformers")
class TransformersTeacher(Teacher):
    """A local causal LM (or encoder-decoder) as teacher.

    Args:
        model: a Hub id, a local folder, a ``.gguf`` file or ``"smollm2-135m-instruct"``, resolved and loaded like a
            student (:func:`~ftcot_hf.students.loading.load_student`); or a loaded ``PreTrainedModel`` (then pass
            ``tokenizer`` and ``name``).
        tokenizer: a tokenizer, when ``model`` is an object (for a name: replaces the model's own).
        gguf_file: a GGUF file name inside the folder or Hub repo ``model`` (transformers dequantises it on load).
        batch_size: prompts per forward batch (each with its ``n`` samples).
        name: the model identity for the cache (default: the id/folder given, ``model:gguf_file`` with a GGUF).
        dtype: ``"auto"`` (default: the checkpoint's), ``"float32"``, ``"bfloat16"``...
        cache_dir: where a GGUF model is converted to once (default: as for students).

    Example:
        >>> teacher = TransformersTeacher.from_config(model="smollm2-135m-instruct")  # doctest: +SKIP
        >>> [(pos, gens)] = teacher.generate([Request(stage1_prompt(question))])  # doctest: +SKIP
    """

    needs_model = True
    model_help = MODEL_HELP

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        gguf_file: str | None = None,
        batch_size: int = 8,
        name: str | None = None,
        dtype: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {batch_size}).")
        if isinstance(model, (str, os.PathLike)):
            model = os.fspath(model)
            self.model = name or (f"{model}:{gguf_file}" if gguf_file else model)
            self.lm, own_tokenizer = load_student(
                model,
                gguf_file=gguf_file,
                dtype=dtype or "auto",
                cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
            )
            self.tokenizer = tokenizer or own_tokenizer
        else:
            if tokenizer is None or name is None:
                raise ValueError("A model object needs its `tokenizer` and a `name` (the cache identity).")
            self.model, self.lm, self.tokenizer = name, model, tokenizer
        self.lm.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size

    @classmethod
    def from_config(
        cls,
        *,
        model: str | None = None,
        base_url: str | Sequence[str] | None = None,
        tasks: Iterable[Any] = (),
        data_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> TransformersTeacher:
        """The transformers teacher of a teach config (the contract of every backend's ``from_config``).

        Args:
            model: what to load: a Hub id, a local folder, a ``.gguf`` file or ``"smollm2-135m-instruct"``.
            base_url / tasks / data_dir: not used (a local model serves any task); accepted because every caller
                passes them.
            **kwargs: the constructor's options (``gguf_file``, ``batch_size``, ``name``, ``dtype``, ``cache_dir``).

        Raises:
            ValueError: no ``model``, or one that cannot be loaded (one line: what and how to fix it).
            TypeError: an option the constructor does not take.
        """
        if not model:
            raise ValueError(f"The transformers teacher needs --teacher_model: {MODEL_HELP}.")
        try:
            return cls(model, **kwargs)
        except (FtcotError, OSError) as e:
            raise ValueError(
                f"The transformers teacher cannot load --teacher_model {model!r}: {_as_teacher(e)}"
            ) from e

    # -- generation ---------------------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        groups: dict[tuple[SamplingParams, int, int], list[int]] = defaultdict(list)
        for pos, request in enumerate(requests):
            groups[request.params, request.n, request.first_index].append(pos)
        for (params, n, first_index), positions in groups.items():
            for start in range(0, len(positions), self.batch_size):
                batch = positions[start : start + self.batch_size]
                prompts = [self.render(requests[p]) for p in batch]
                outputs = self._generate_batch(prompts, params, n, first_index)
                for pos, gens in zip(batch, outputs, strict=True):
                    yield pos, gens

    def render(self, request: Request) -> str:
        """The text the model continues: the prompt itself, or for a chat request the prompt as a user turn through
        the tokenizer's chat template (with the assistant turn opened), as a chat server would render it."""
        if not request.chat:
            return request.prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"The transformers teacher {self.model!r} has no chat template: teach with --chat false (raw prompts)."
            )
        messages = [{"role": "user", "content": request.prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _generate_batch(
        self, prompts: list[str], params: SamplingParams, n: int, first_index: int = 0
    ) -> list[list[Generation]]:
        sample = params.temperature > 0
        stops = [s for s in params.stop if s]
        processors = []
        if sample and params.top_p < 1.0:
            processors.append(_top_p(params.top_p, params.temperature))
        if len(stops) > 1:  # generate_completions stops at one phrase; further ones force EOS the step after
            processors.append(_stop_strings(self.tokenizer, stops, self._eos_id()))
        completions = generate_completions(
            self.lm,
            self.tokenizer,
            prompts,
            max_new_tokens=params.max_tokens,
            batch_size=len(prompts) * n,
            stop=stops[0] if len(stops) == 1 else None,
            do_sample=sample,
            temperature=params.temperature if sample else 1.0,
            num_return_sequences=n,
            seed=_sampling_seed(params.seed, first_index) if sample else None,
            logits_processor=_chain(processors),
        )
        prompt_tokens = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        results: list[list[Generation]] = []
        for i, per_prompt in enumerate(completions):
            gens = []
            for c in per_prompt:
                text, stopped = c.text, c.finish_reason == "stop"
                found = [at for at in (text.find(s) for s in stops) if at != -1]
                if found:  # OpenAI semantics: the text ends before the first stop string, which is left out
                    text, stopped = text[: min(found)], True
                ended = c.finish_reason == "eos"
                tokens = c.num_tokens - (1 if ended else 0)
                gens.append(Generation(text, "stop" if (stopped or ended) else "length", prompt_tokens[i], tokens))
            results.append(gens)
        return results

    def _eos_id(self) -> int | None:
        for value in (
            getattr(self.tokenizer, "eos_token_id", None),
            getattr(getattr(self.lm, "generation_config", None), "eos_token_id", None),
            getattr(self.lm.config, "eos_token_id", None),
        ):
            if isinstance(value, (list, tuple)):
                value = next((v for v in value if isinstance(v, int)), None)
            if isinstance(value, int):
                return value
        return None


def _sampling_seed(seed: int | None, first_index: int) -> int:
    """The base seed of a sampling call: ``seed`` itself for samples from 0, a derived one for later samples."""
    base = seed if seed is not None else 0
    if first_index == 0:
        return base
    digest = hashlib.sha256(f"{base}:first_index={first_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def _top_p(top_p: float, temperature: float) -> Any:
    """Nucleus filtering as transformers' ``TopPLogitsWarper`` (after the temperature): tokens outside the smallest
    set whose probability reaches ``top_p`` get ``-inf`` (the most likely token always stays)."""

    def process(rows: Sequence[int], generated: Sequence[Sequence[int]], scores: Any) -> Any:
        import torch

        sorted_scores, order = torch.sort(scores / temperature, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= (1 - top_p)
        drop_sorted[..., -1] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        return scores.masked_fill(drop, float("-inf"))

    return process


def _stop_strings(tokenizer: Any, stops: Sequence[str], eos_id: int | None) -> Any:
    """Force EOS on the step after a row's recent text contains one of ``stops`` (the caller cuts the text)."""
    window = max(len(s) for s in stops) + 8

    def process(rows: Sequence[int], generated: Sequence[Sequence[int]], scores: Any) -> Any:
        if eos_id is None:
            return scores
        hits = [
            b
            for b, ids in enumerate(generated)
            if ids and any(s in tokenizer.decode(list(ids[-window:]), skip_special_tokens=True) for s in stops)
        ]
        if hits:
            scores = scores.clone()
            scores[hits] = float("-inf")
            scores[hits, eos_id] = 0.0
        return scores

    return process


def _chain(processors: list[Any]) -> Any:
    if not processors:
        return None
    if len(processors) == 1:
        return processors[0]

    def process(rows: Sequence[int], generated: Sequence[Sequence[int]], scores: Any) -> Any:
        for p in processors:
            scores = p(rows, generated, scores)
        return scores

    return process


def _as_teacher(error: BaseException) -> str:
    """The first line of a student-loading error, worded for a teacher (the loader names its input a student)."""
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    text = text.replace("--student", "--teacher_model")
    return re.sub(r"\b([Ss])tudent\b", lambda m: "Model" if m.group(1) == "S" else "model", text)


__all__ = ["MODEL_HELP", "TransformersTeacher"]
