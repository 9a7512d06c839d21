"""Batched generation for evaluation: left padding, length-sorted batches, a stop phrase per row, finished rows
dropped from the batch.

Why a loop of our own rather than ``model.generate``: ``generate`` keeps decoding every row of a batch until the
last one finishes (a finished row is only padded), so a batch costs as much as its longest completion. Here a row
that emits the stop phrase (`` END``), EOS or reaches its token limit leaves the batch at once: its row is removed
from the KV cache (``Cache.batch_select_indices``), from the attention mask and, for decoder-only models, the
left-padding columns no remaining row needs are cut from the cache too. Later steps run on the rows still going.
``bench/eval_speed.py`` measures the difference.

Contract of :func:`generate_completions`:

* **Text**: the generated text up to, NOT including, the first occurrence of the stop phrase (the OpenAI API's
  ``stop`` semantics, which the paper's GPT-3 runs used; ``ftcot_hf.tasks.answers`` expects completions that way). With
  the default ``stop="END"`` and the trained completion ``" ... --> yes END"`` the text is ``" ... --> yes "``
  (the space before END is kept; parsing ignores it). EOS and other special tokens are not part of the text.
* **finish_reason**: ``"stop"`` (the stop phrase was generated), ``"eos"`` (an end-of-sequence token) or
  ``"length"`` (``max_new_tokens`` reached, or the model's position limit: prompt + completion never exceed
  ``n_positions``/``max_position_embeddings``; the paper's limit is 1024 in total).
* **num_tokens**: tokens generated for the row, the stop phrase's and EOS tokens included (the work done).
* **Order**: results come back in the order of ``prompts`` (outer list) and sample number (inner list), whatever the
  batching. Greedy decoding gives the same completions batched or one by one (tested): positions are counted from
  each row's first real token, so left padding does not shift them.
* **Sampling** (``do_sample=True``): plain temperature sampling; each row has its own random generator seeded from
  ``(seed, prompt position, sample number)``, so samples do not depend on the batch size or the sort order.
* Prompts longer than the model's position limit keep their last tokens (logged).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.defaults import EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS
from ftcot_hf.utils.console import progress_bar

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "eos", "length"]

RowLogitsProcessor = Callable[[Sequence[int], Sequence[Sequence[int]], "torch.Tensor"], "torch.Tensor"]
"""``(rows, generated, scores) -> scores``: ``rows[i]`` is the flat sequence number (``prompt_position * k +
sample_number``) of row ``i`` of ``scores`` (``[rows, vocab]``, float32), ``generated[i]`` its tokens so far.
For tests and benchmarks (forcing a stop at a chosen step); rows are pruned and sorted, hence the explicit ids."""


@dataclass(frozen=True)
class Completion:
    """One generated completion (see the module docstring for the exact contract)."""

    text: str
    finish_reason: FinishReason
    num_tokens: int


@dataclass
class _Row:
    flat: int
    prompt_index: int
    sample: int
    limit: int
    generator: Any = None
    generated: list[int] = field(default_factory=list)
    finish: FinishReason | None = None


def _max_positions(config: Any) -> int | None:
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _accepts(model: Any, name: str) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _row_seed(base: int, prompt_index: int, sample: int) -> int:
    digest = hashlib.sha256(f"{base}:{prompt_index}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _DecoderOnly:
    """Left-padded batch of a causal LM with a KV cache whose rows can be dropped."""

    def __init__(self, model: Any, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.device = model.device
        self.extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}

    def prefill(self, prompts: list[list[int]], k: int) -> torch.Tensor:
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[b, width - len(p) :] = 1
        # Positions count from each row's first real token: left padding must not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **self.extra)
        self.cache = out.past_key_values
        logits = out.logits[:, -1, :]
        self.mask = mask
        self.next_pos = mask.sum(-1)
        if k > 1:
            self.cache.batch_repeat_interleave(k)
            logits = logits.repeat_interleave(k, dim=0)
            self.mask = self.mask.repeat_interleave(k, dim=0)
            self.next_pos = self.next_pos.repeat_interleave(k, dim=0)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.next_pos[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :]

    def select(self, keep: list[int]) -> None:
        import torch

        idx = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(idx)
        self.mask = self.mask[idx]
        self.next_pos = self.next_pos[idx]
        self._crop_left()

    def _crop_left(self) -> None:
        # The rows left may all start later than the longest prompt that was dropped: its padding columns are
        # attended by nobody, so they leave the cache (plain dynamic layers only; other caches keep them).
        from transformers.cache_utils import DynamicLayer

        lead = int(self.mask.any(dim=0).int().argmax())
        layers = getattr(self.cache, "layers", None)
        if lead == 0 or not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return
        for layer in layers:
            if layer.is_initialized and layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys[:, :, lead:, :]
                layer.values = layer.values[:, :, lead:, :]
        self.mask = self.mask[:, lead:]


class _EncoderDecoder:
    """Encoder run once; the decoder steps with a self- and cross-attention cache whose rows can be dropped."""

    def __init__(self, model: Any, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.device = model.device
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
        if start is None:
            start = getattr(model.config, "pad_token_id", None)
        if start is None:
            raise FtcotError(
                "The encoder-decoder model has no decoder_start_token_id (nor pad_token_id) in its config: set "
                "model.config.decoder_start_token_id before evaluating."
            )
        self.start = int(start)

    def prefill(self, prompts: list[list[int]], k: int) -> torch.Tensor:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[b, : len(p)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True).last_hidden_state
        if k > 1:
            hidden, mask = hidden.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0)
        self.hidden, self.mask, self.cache = hidden, mask, None
        self._output = BaseModelOutput
        start = torch.full((hidden.shape[0],), self.start, dtype=torch.long, device=self.device)
        return self.step(start)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(
            encoder_outputs=self._output(last_hidden_state=self.hidden),
            attention_mask=self.mask,
            decoder_input_ids=tokens[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        return out.logits[:, -1, :]

    def select(self, keep: list[int]) -> None:
        import torch

        idx = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(idx)
        self.hidden, self.mask = self.hidden[idx], self.mask[idx]


def _finish_text(tokenizer: Any, row: _Row, stop: str | None) -> str:
    ids = row.generated[:-1] if row.finish == "eos" else row.generated
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if row.finish == "stop" and stop:
        at = text.find(stop)
        if at >= 0:
            text = text[:at]
    return text


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    batch_size: int = EVAL_BATCH_SIZE,
    stop: str | None = "END",
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    seed: int | None = None,
    progress: bool | Any = False,
    logits_processor: RowLogitsProcessor | None = None,
) -> list[list[Completion]]:
    """Generate completions for ``prompts``, batched, stopping each row at ``stop``/EOS/its token limit.

    Args:
        model: a ``transformers`` causal LM or encoder-decoder (``model.config.is_encoder_decoder``), or a peft
            wrapper of one. Its training/eval mode is restored afterwards.
        tokenizer: its tokenizer (not modified; padding is done here).
        prompts: the prompt texts (for encoder-decoder models: the encoder inputs).
        max_new_tokens: tokens generated per completion at most.
        batch_size: sequences decoded together (prompts per batch = ``batch_size // num_return_sequences``, >= 1).
        stop: the stop phrase (default ``"END"``, the paper's), or None to stop at EOS / the limit only.
        do_sample / temperature: greedy (default) or temperature sampling.
        num_return_sequences: completions per prompt (k for self-consistency).
        seed: base seed of the per-row generators (sampling only; None: a random one).
        progress: True: a bar of finished sequences for this call; or a bar of the caller's (anything with
            ``update(n)``, e.g. one tqdm bar over every generation of an evaluation), advanced by one per finished
            sequence and left open.
        logits_processor: see :data:`RowLogitsProcessor` (tests and benchmarks).

    Returns:
        One list per prompt (in order) of ``num_return_sequences`` :class:`Completion` (in sample order).

    Raises:
        ValueError: a non-positive size, or ``temperature <= 0`` with sampling.

    Example:
        >>> completions = generate_completions(model, tok, ["A coin is heads up. ... ###"], max_new_tokens=64)
        >>> completions[0][0].text, completions[0][0].finish_reason    # doctest: +SKIP
        (' The coin was flipped once... --> no ', 'stop')
    """
    import torch

    _check_sizes(max_new_tokens, batch_size, num_return_sequences, temperature if do_sample else None)
    prompts = list(prompts)
    if not prompts:
        return []
    k = num_return_sequences
    decoding = _Decoding.of(model, tokenizer, stop=stop, k=k, temperature=temperature if do_sample else None,
                            seed=seed, logits_processor=logits_processor)  # fmt: skip
    max_pos = None if decoding.stepper is _EncoderDecoder else _max_positions(model.config)
    encoded, limits = _encode(tokenizer, prompts, max_new_tokens, max_pos)
    # Longest prompts first: similar lengths share a batch (little padding) and memory peaks show up at once.
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
    per_batch = max(1, batch_size // k)
    results: list[list[Completion | None]] = [[None] * k for _ in prompts]
    own_bar = progress is True
    bar = progress_bar(len(prompts) * k, "generating", "seq") if own_bar else (progress or None)
    started, total_tokens = time.perf_counter(), 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), per_batch):
                for row in decoding.batch(order[start : start + per_batch], encoded, limits):
                    text = _finish_text(tokenizer, row, decoding.stop)
                    results[row.prompt_index][row.sample] = Completion(text, row.finish, len(row.generated))
                    total_tokens += len(row.generated)
                    if bar is not None:
                        bar.update(1)
    finally:
        if was_training:
            model.train()
        if own_bar and bar is not None:
            bar.close()
    wall = time.perf_counter() - started
    logger.info("Generated %d sequences, %d tokens in %.1f s (%.1f tokens/s).", len(prompts) * k, total_tokens, wall,
                total_tokens / wall if wall > 0 else 0.0)  # fmt: skip
    return [[c for c in per_prompt if c is not None] for per_prompt in results]


def _check_sizes(max_new_tokens: int, batch_size: int, num_return_sequences: int, temperature: float | None) -> None:
    if max_new_tokens < 1 or batch_size < 1 or num_return_sequences < 1:
        raise ValueError(
            f"max_new_tokens ({max_new_tokens}), batch_size ({batch_size}) and num_return_sequences "
            f"({num_return_sequences}) must be at least 1."
        )
    if temperature is not None and not temperature > 0:
        raise ValueError(f"Sampling needs a temperature > 0 (got {temperature}); use do_sample=False for greedy.")


def _encode(
    tokenizer: Any, prompts: list[str], max_new_tokens: int, max_pos: int | None
) -> tuple[list[list[int]], list[int]]:
    """Each prompt's tokens and its own limit of new tokens: a decoder's prompt + completion never exceed its
    ``max_pos`` positions, so a longer prompt keeps its last ``max_pos - 1`` tokens (logged)."""
    encoded: list[list[int]] = [list(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]
    limits = [max_new_tokens] * len(prompts)
    if max_pos is not None:
        cut = 0
        for i, ids in enumerate(encoded):
            if len(ids) >= max_pos:
                encoded[i], cut = ids[-(max_pos - 1) :], cut + 1
            limits[i] = min(max_new_tokens, max_pos - len(encoded[i]))
        if cut:
            logger.warning(
                "%d prompt(s) exceed the model's %d positions: only their last %d tokens are used.",
                cut,
                max_pos,
                max_pos - 1,
            )
    if any(len(ids) == 0 for ids in encoded):
        raise FtcotError("An empty prompt tokenizes to no tokens: give every prompt some text.")
    return encoded, limits


@dataclass
class _Decoding:
    """What every batch of one :func:`generate_completions` call shares: the model, how a token is chosen and when
    a row is finished."""

    model: Any
    tokenizer: Any
    stepper: type[_DecoderOnly] | type[_EncoderDecoder]
    pad_id: int
    eos_ids: set[int]
    stop: str | None
    k: int
    temperature: float | None
    """None: greedy."""
    base_seed: int
    gen_device: Any
    logits_processor: RowLogitsProcessor | None

    @classmethod
    def of(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        stop: str | None,
        k: int,
        temperature: float | None,
        seed: int | None,
        logits_processor: RowLogitsProcessor | None,
    ) -> _Decoding:
        """The decoding of ``model``: its stepper and EOS ids, the pad id (the tokenizer's, else an EOS id) and,
        when sampling (``temperature``), the base seed of the rows' generators (None: a random one)."""
        eos_ids = _eos_ids(model, tokenizer)
        pad_ids = (getattr(tokenizer, "pad_token_id", None), *sorted(eos_ids))
        return cls(
            model=model,
            tokenizer=tokenizer,
            stepper=_EncoderDecoder if getattr(model.config, "is_encoder_decoder", False) else _DecoderOnly,
            pad_id=next((v for v in pad_ids if isinstance(v, int)), 0),
            eos_ids=eos_ids,
            stop=stop or None,
            k=k,
            temperature=temperature,
            base_seed=(seed if seed is not None else secrets.randbits(62)) if temperature is not None else 0,
            gen_device=model.device if getattr(model.device, "type", "cpu") != "meta" else "cpu",
            logits_processor=logits_processor,
        )

    def batch(self, chunk: list[int], encoded: list[list[int]], limits: list[int]) -> Iterator[_Row]:
        """Decode the prompts ``chunk`` (``k`` rows each), yielding each row as it finishes; a finished row leaves
        the batch and its cache at once."""
        rows = [_Row(flat=i * self.k + j, prompt_index=i, sample=j, limit=limits[i], generator=self._generator(i, j))
                for i in chunk for j in range(self.k)]  # fmt: skip
        stepper = self.stepper(self.model, self.pad_id)
        logits = stepper.prefill([encoded[i] for i in chunk], self.k)
        active = rows
        while True:
            tokens = self._next_tokens(logits, active)
            keep: list[int] = []
            for b, (row, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
                row.generated.append(token)
                row.finish = self._finish(row, token)
                if row.finish is None:
                    keep.append(b)
                else:
                    yield row
            if not keep:
                return
            if len(keep) < len(active):
                stepper.select(keep)
                tokens = tokens[keep]
                active = [active[b] for b in keep]
            logits = stepper.step(tokens.to(stepper.device))

    def _generator(self, prompt_index: int, sample: int) -> Any:
        """A sampled row's own random generator: samples do not depend on the batch size or the sort order."""
        if self.temperature is None:
            return None
        import torch

        gen = torch.Generator(device=self.gen_device)
        gen.manual_seed(_row_seed(self.base_seed, prompt_index, sample))
        return gen

    def _next_tokens(self, logits: torch.Tensor, active: list[_Row]) -> torch.Tensor:
        import torch

        scores = logits.float()
        if self.logits_processor is not None:
            scores = self.logits_processor([r.flat for r in active], [r.generated for r in active], scores)
        if self.temperature is None:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores / self.temperature, dim=-1)
        return torch.cat([torch.multinomial(probs[b], 1, generator=r.generator) for b, r in enumerate(active)])

    def _finish(self, row: _Row, token: int) -> FinishReason | None:
        if token in self.eos_ids:
            return "eos"
        # Only the last tokens can complete the stop phrase: decoding the whole row every step would be quadratic.
        window = len(self.stop) + 8 if self.stop else 0
        if self.stop and self.stop in self.tokenizer.decode(row.generated[-window:], skip_special_tokens=True):
            return "stop"
        if len(row.generated) >= row.limit:
            return "length"
        return None
