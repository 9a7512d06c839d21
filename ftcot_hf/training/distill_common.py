"""What ``ftcot distill``'s trainers share, with a local teacher (:mod:`ftcot_hf.training.distill`) or a served one
(:mod:`ftcot_hf.training.distill_server`): the line that names the trainer, where a model's tokenizer is read from,
TRL's experimental imports without their warning, and the trainer class without TRL's model card."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ftcot_hf.students.loading import ensure_converted, resolve_student


@contextlib.contextmanager
def experimental() -> Iterator[None]:
    """Imports from ``trl.experimental`` without TRL's warning about them: the line on the trainer says so."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*trl.experimental")
        yield


def model_source(name: str) -> str:
    """Where a model's tokenizer and config are read from: its folder, the converted folder of a GGUF, or a Hub id."""
    kind, where = resolve_student(name)
    if kind == "gguf":
        return str(ensure_converted(where))
    if kind == "adapter":  # a LoRA student: the tokenizer saved beside it, else its base's
        adapter = Path(where)
        if (adapter / "tokenizer_config.json").is_file():
            return str(adapter)
        base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        return model_source(base)
    return str(where)


@dataclass(frozen=True)
class VocabularyCheck:
    """Which trainer distils this pair, and why, in one line."""

    trainer: str
    """``DistillationTrainer``, ``GOLDTrainer`` or ``ServerDistillationTrainer``."""
    uld: bool
    """GOLD's ULD loss (the tokenizations are aligned by text): the tokens differ."""
    line: str
    teacher: str | None = None
    """The teacher as the card names it, where it is not ``--teacher_model`` (a served model)."""


def no_auto_card(cls: type) -> type:
    """The trainer without TRL's model card at every checkpoint ("fine-tuned version of [None]"); ours is written at
    the end (``write_student_card``)."""
    return type(f"Ftcot{cls.__name__}", (cls,), {"create_model_card": lambda self, *a, **k: None})
