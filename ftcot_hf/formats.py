"""Student formats: how a record becomes a prompt and a completion (SPEC §4), one registry.

A format is a pair of pure functions over a record (a dict with at least ``question`` and ``answer``; CoT formats
also need ``rationale``) plus the answer prefix used to parse what a student generates. Training formats produce
TRL's standard prompt/completion records, so ``SFTTrainer`` masks the prompt by itself.

    >>> get_format("ft_cot").prompt({"question": "Is it heads?"})
    'Is it heads? ###'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ftcot_hf.errors import FtcotError

END = "END"
"""The paper's stop phrase: completions end with ``" END"`` and inference stops there."""


class UnknownFormatError(FtcotError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingColumnsError(FtcotError, ValueError):
    pass


@dataclass(frozen=True)
class StudentFormat:
    """One prompt/completion layout.

    ``prompt_fn``/``completion_fn`` take a record (stripped, as the reference does) and return text;
    ``completion_fn`` is None for inference-only formats (baselines). ``prefix`` is the answer prefix used by the
    parser (``answers.PREDICTION_PREFIXES``); ``stop`` the text inference stops at.
    """

    name: str
    prompt_fn: Callable[[Mapping[str, Any]], str]
    completion_fn: Callable[[Mapping[str, Any]], str] | None
    prefix: str | None
    required_columns: tuple[str, ...] = ("question", "answer")
    encoder_decoder: bool = False
    stop: str | None = END
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trainable(self) -> bool:
        return self.completion_fn is not None

    def check_columns(self, columns: Any) -> None:
        missing = [c for c in self.required_columns if c not in columns]
        if missing:
            raise MissingColumnsError(
                f"Format {self.name!r} needs the column(s) {', '.join(missing)}, which the dataset lacks "
                f"(it has: {', '.join(sorted(columns))}). Use a rationale dataset from `ftcot teach` for CoT formats, "
                "or pick a format whose columns you have (`ftcot_hf.formats.FORMATS`)."
            )

    def prompt(self, record: Mapping[str, Any]) -> str:
        return self.prompt_fn(_stripped(record))

    def completion(self, record: Mapping[str, Any]) -> str:
        if self.completion_fn is None:
            raise FtcotError(f"Format {self.name!r} is for inference only (a baseline); it has no training target.")
        return self.completion_fn(_stripped(record))

    def __call__(self, record: Mapping[str, Any]) -> dict[str, str]:
        """A TRL prompt/completion record (for ``Dataset.map``)."""
        return {"prompt": self.prompt(record), "completion": self.completion(record)}


def _stripped(record: Mapping[str, Any]) -> dict[str, Any]:
    # The reference strips question, answer and rationale before formatting (format.py), so do we.
    return {k: v.strip() if isinstance(v, str) else v for k, v in record.items()}


FORMATS: dict[str, StudentFormat] = {}


def register_format(fmt: StudentFormat) -> StudentFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"A format named {fmt.name!r} is already registered.")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str | StudentFormat) -> StudentFormat:
    if isinstance(name, StudentFormat):
        return name
    try:
        return FORMATS[name]
    except KeyError:
        close = difflib.get_close_matches(name, FORMATS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownFormatError(f"Unknown format {name!r}.{hint} Known formats: {', '.join(FORMATS)}.") from None


# --- the paper's formats -------------------------------------------------------------------------------------------
register_format(
    StudentFormat(
        name="ft_cot",
        prompt_fn=lambda r: f"{r['question']} ###",
        completion_fn=lambda r: f" {r['rationale']} --> {r['answer']} {END}",
        prefix="-->",
        required_columns=("question", "answer", "rationale"),
        description="Fine-tune-CoT: '{q} ###' -> ' {rationale} --> {answer} END'",
    )
)
register_format(
    StudentFormat(
        name="vanilla",
        prompt_fn=lambda r: f"{r['question']} ###",
        completion_fn=lambda r: f" {r['answer']} {END}",
        prefix=None,
        description="vanilla fine-tune baseline: '{q} ###' -> ' {answer} END'",
    )
)
register_format(
    StudentFormat(
        name="natural",
        prompt_fn=lambda r: f"Q: {r['question']}\n\nA: Let's think step by step.\n\n",
        completion_fn=lambda r: f" {r['rationale']}\n\nTherefore, the answer is {r['answer']} {END}",
        prefix="Therefore, the answer is",
        required_columns=("question", "answer", "rationale"),
        description="natural-language Fine-tune-CoT (the reference's ft_cot_natural)",
    )
)
register_format(
    StudentFormat(
        name="ft_cot_t5",
        prompt_fn=lambda r: r["question"],
        completion_fn=lambda r: f"{r['rationale']} --> {r['answer']}",
        prefix="-->",
        required_columns=("question", "answer", "rationale"),
        encoder_decoder=True,
        stop=None,
        description="Fine-tune-CoT for encoder-decoder students: '{q}' -> '{rationale} --> {answer}'",
    )
)
register_format(
    StudentFormat(
        name="vanilla_t5",
        prompt_fn=lambda r: r["question"],
        completion_fn=lambda r: r["answer"],
        prefix=None,
        encoder_decoder=True,
        stop=None,
        description="vanilla fine-tune for encoder-decoder students: '{q}' -> '{answer}'",
    )
)
# Inference-only baselines (few-shot-CoT and two-stage zero-shot-CoT need task exemplars / a second pass and live
# with the evaluation code).
register_format(
    StudentFormat(
        name="zero_shot",
        prompt_fn=lambda r: f"Q: {r['question']}\n\nA:",
        completion_fn=None,
        prefix=None,
        required_columns=("question",),
        stop=None,
        description="zero-shot baseline: 'Q: {q}\\n\\nA:'",
    )
)
register_format(
    StudentFormat(
        name="zero_shot_t5",
        prompt_fn=lambda r: f"question: {r['question']}",
        completion_fn=None,
        prefix=None,
        required_columns=("question",),
        encoder_decoder=True,
        stop=None,
        description="zero-shot baseline for T5 (SQuAD style): 'question: {q}'",
    )
)
