"""A smaller student of the same vocabulary: a decoder with some of its layers (``keep_layers``).

On-policy distillation needs a teacher and a student over one vocabulary; the smallest model a CPU trains in
minutes (SmolLM2-135M) has no smaller sibling, so the distillation study makes one: SmolLM2-135M with every other
layer (15 of 30), its embeddings, final norm and LM head kept. The result is not a trained model (removing layers
hurts it), but a student that starts from pretrained weights and shares the teacher's tokenizer, which is what
Fine-tune-CoT then trains::

    from ftcot_hf.students.shrink import keep_layers

    keep_layers("smollm2-135m-instruct", "students/smollm2-half")            # layers 0, 2, 4, ..., 28
    keep_layers("gpt2", "students/gpt2-first6", layers=range(6))              # the first 6 of 12
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.utils.fs import atomic_dir

logger = logging.getLogger(__name__)

MARKER = "ftcot_shrink.json"
"""Written into the folder: the source and the layers kept (a folder made with the same arguments is reused)."""


def _decoder_layers(model: Any, count: int) -> str:
    """The dotted name of the model's ``ModuleList`` of ``count`` decoder layers (``model.layers`` in Llama-like
    models, ``transformer.h`` in GPT-2)."""
    import torch

    found = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and len(module) == count]  # fmt: skip
    if len(found) != 1:
        raise FtcotError(f"{type(model).__name__}: cannot tell its decoder layers apart ({len(found)} lists of "
                         f"{count} modules): keep_layers takes decoder-only models with one layer stack.")  # fmt: skip
    return found[0]


def keep_layers(source: str, dest: str | Path, layers: Iterable[int] | None = None) -> Path:
    """Save to ``dest`` the decoder ``source`` (a Hub id, folder, .gguf or ``smollm2-135m-instruct``) with only the
    decoder layers ``layers`` (default: every other one, from the first: 0, 2, 4, ...), in their order, and its
    tokenizer. Embeddings, final norm and LM head are kept as they are; per-layer config lists (``layer_types``) are
    cut to match. Returns ``dest``; a folder already made from the same source and layers is reused."""
    from transformers import AutoModelForCausalLM

    from ftcot_hf.students.loading import load_student

    dest = Path(dest)
    model, tokenizer = load_student(source)
    config = model.config.get_text_config()
    total = int(config.num_hidden_layers)
    chosen = list(range(0, total, 2)) if layers is None else sorted(set(layers))
    if not chosen or chosen[0] < 0 or chosen[-1] >= total:
        raise FtcotError(f"keep_layers: layers {chosen} are not among the {total} layers of {source}.")
    record = {"source": str(source), "layers": chosen, "of": total}
    marker = dest / MARKER
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == record:
        return dest
    stack = _decoder_layers(model, total)
    pattern = re.compile(rf"^{re.escape(stack)}\.(\d+)\.")
    renumber = {old: new for new, old in enumerate(chosen)}
    state = {}
    for key, value in model.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = value
        elif int(match.group(1)) in renumber:
            state[pattern.sub(f"{stack}.{renumber[int(match.group(1))]}.", key)] = value
    config.num_hidden_layers = len(chosen)
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == total:
        config.layer_types = [config.layer_types[i] for i in chosen]
    small = AutoModelForCausalLM.from_config(model.config)
    missing, unexpected = small.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise FtcotError(f"keep_layers: the smaller model does not take the kept weights (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}).")  # fmt: skip
    small.tie_weights()
    with atomic_dir(dest) as tmp:
        small.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(record), encoding="utf-8")
    params = sum(p.numel() for p in small.parameters())
    logger.info("Saved %s with layers %s of %d (%.1fM parameters) to %s", source, chosen, total, params / 1e6, dest)
    return dest
