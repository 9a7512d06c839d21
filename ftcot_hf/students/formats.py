"""Student formats: how a record becomes a prompt and a completion, one registry.

A format is a pair of pure functions over a record (a dict with at least ``question`` and ``answer``; CoT formats
also need ``rationale``) plus the answer prefix used to parse what a student generates. Training formats produce
TRL's standard prompt/completion records, so ``SFTTrainer`` masks the prompt by itself.

    >>> get_format("ft_cot").prompt({"question": "Is it heads?"})
    'Is it heads? ###'

Layouts (``Layout``): the paper's decoder formats and the Teacher-LM placements are built from one description, so
their separators can be changed with :func:`make_format` (defaults: the paper's ``" ###"``, ``" -->"``, ``END``).

=================  ===========  ==============================================================================
format             prompt       completion (TRL appends EOS after it)
=================  ===========  ==============================================================================
``ft_cot``         ``{q} ###``  `` {rationale} --> {answer} END``
``vanilla``        ``{q} ###``  `` {answer} END``
``middle_<field>`` ``{q} ###``  `` {field} --> {answer} END``
``middle_triple``  ``{q} ###``  `` Fundamentals: {f} {rationale} Common errors: {e} --> {answer} END``
``tail_<field>``   ``{q} ###``  `` --> {answer} END {field}``
``tail_triple``    ``{q} ###``  `` --> {answer} END Fundamentals: {f} {rationale} Common errors: {e}``
``ft_cot_t5``      ``{q}``      ``{rationale} --> {answer}``
``<layout>_t5``    ``{q}``      as above without the leading space (and without END in middle layouts)
=================  ===========  ==============================================================================

``<field>`` is ``rationale``, ``fundamentals`` or ``common_errors`` (Teacher-LM's annotations, asked from the teacher
with ``ftcot teach --annotations``); ``fundamentals`` and ``common_errors`` carry their label (``Fundamentals:``,
``Common errors:``), the rationale none, so ``middle_rationale`` is exactly ``ft_cot``; ``triple`` has all three in the
order fundamentals, rationale, common errors.

Why the tail layout puts ``END`` right after the answer: paper-mode parsing takes the first candidate after the
first ``-->``, and for last-letter concatenation it joins *everything* after the prefix into one candidate. Inference
stops at ``END``, so a tail-format student's parsed text is ``" --> {answer}"`` and every task's parser finds the
answer; the annotations after ``END`` are a training signal only (they are never generated at test time). Empty
annotation values are left out, with their label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ftcot_hf.errors import FtcotError
from ftcot_hf.registry import Registry

if TYPE_CHECKING:
    from datasets import Dataset

END = "END"
"""The paper's stop phrase: completions end with ``" END"`` and inference stops there."""

PROMPT_SEP = " ###"
"""The paper's prompt separator (appended to the question)."""

ANSWER_SEP = " -->"
"""The paper's answer separator (between the rationale and the answer); its stripped text is the parsing prefix."""

TEACHER_FIELDS = ("rationale", "fundamentals", "common_errors")
"""Teacher fields a layout can place; ``triple`` uses all three in this order: fundamentals, rationale, errors."""

FIELD_LABELS: dict[str, str] = {"rationale": "", "fundamentals": "Fundamentals:", "common_errors": "Common errors:"}
"""Text written before a field's value (the rationale has none, so ``middle_rationale == ft_cot``)."""

_TRIPLE = ("fundamentals", "rationale", "common_errors")


class UnknownFormatError(FtcotError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingColumnsError(FtcotError, ValueError):
    pass


class EmptyDatasetError(FtcotError, ValueError):
    """A dataset with no rows where rows are needed (e.g. nothing left after filtering)."""


@dataclass(frozen=True)
class Layout:
    """Where the parts of a trainable format go, and which separators join them.

    Attributes:
        fields: teacher columns written into the completion, in order (empty: the vanilla answer-only format).
        placement: ``"middle"`` (between the question and the answer, as Fine-tune-CoT) or ``"tail"`` (after the
            answer and ``stop``; a training signal only, since inference stops at ``stop``).
        prompt_sep: appended verbatim to the question (``" ###"``; ``""`` for encoder-decoder students).
        answer_sep: written verbatim before ``" {answer}"`` (``" -->"``); its stripped text is the parsing prefix.
            None: no separator and no prefix (vanilla).
        stop: the stop phrase written after the answer, after one space (``"END"``); None: none (the student
            stops at EOS alone). Tail layouts need one.
        encoder_decoder: target text without the leading space (T5 tokenizers add no prefix space).
    """

    fields: tuple[str, ...] = ("rationale",)
    placement: Literal["middle", "tail"] = "middle"
    prompt_sep: str = PROMPT_SEP
    answer_sep: str | None = ANSWER_SEP
    stop: str | None = END
    encoder_decoder: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.fields if f not in FIELD_LABELS]
        if unknown:
            raise ValueError(f"Unknown layout field(s) {unknown}; known: {', '.join(FIELD_LABELS)}.")
        if self.placement not in ("middle", "tail"):
            raise ValueError(f"placement must be 'middle' or 'tail', got {self.placement!r}.")
        if self.placement == "tail" and not (self.stop and self.stop.strip()):
            raise ValueError(
                "A tail layout needs a stop phrase: inference stops there, right after the answer, before the "
                "annotations (set stop, e.g. 'END')."
            )
        if not self.fields and self.placement == "tail":
            raise ValueError("A tail layout needs at least one field to place after the answer.")
        if self.stop is not None:
            object.__setattr__(self, "stop", self.stop.strip() or None)

    @property
    def prefix(self) -> str | None:
        return self.answer_sep.strip() or None if self.answer_sep else None

    def prompt(self, r: Mapping[str, Any]) -> str:
        return f"{r['question']}{self.prompt_sep}"

    def completion(self, r: Mapping[str, Any]) -> str:
        parts = []
        for name in self.fields:
            value = r[name]
            if value:
                label = FIELD_LABELS[name]
                parts.append(f"{label} {value}" if label else value)
        body = " ".join(parts)
        answer = f"{self.answer_sep or ''} {r['answer']}"
        stop = f" {self.stop}" if self.stop else ""
        if self.placement == "middle":
            text = (f" {body}" if body else "") + answer + stop
        else:
            text = answer + stop + (f" {body}" if body else "")
        return text.lstrip() if self.encoder_decoder else text


@dataclass(frozen=True)
class StudentFormat:
    """One prompt/completion layout.

    ``prompt_fn``/``completion_fn`` take a record (stripped, as the reference does) and return text;
    ``completion_fn`` is None for inference-only formats (baselines). ``prefix`` is the answer prefix used by the
    parser; ``stop`` the text inference stops at. ``layout`` is set for formats built from a :class:`Layout` (those
    :func:`make_format` can re-separate).
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
    layout: Layout | None = None
    expand_fn: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None
    """Formats that train on several rows per record (distilling step-by-step: a label row and a rationale row)
    give them here as (prompt, completion) pairs; ``prompt_fn`` is then what inference asks."""
    paper_method: str | None = None
    """The paper's method name of a student evaluated in this format (its tables' rows: ``Fine-tune-CoT``,
    ``Fine-tune``, ``Zero-shot``); None: the paper has no such row."""
    encoder_decoder_variant: str | None = None
    """The registered format an encoder-decoder student uses instead of this one (``ft_cot`` -> ``ft_cot_t5``)."""

    @property
    def trainable(self) -> bool:
        return self.completion_fn is not None

    def check_columns(self, columns: Any) -> None:
        missing = [c for c in self.required_columns if c not in columns]
        if missing:
            raise MissingColumnsError(
                f"Format {self.name!r} needs the column(s) {', '.join(missing)}, which the dataset lacks "
                f"(it has: {', '.join(sorted(columns))}). Use a rationale dataset from `ftcot teach` for CoT formats "
                "(`ftcot teach --annotations` for fundamentals/common_errors), or pick a format whose columns you "
                "have (`ftcot_hf.students.formats.FORMATS`)."
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

    def training_rows(self, record: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every (prompt, completion) this record trains on: one, or :attr:`expand_fn`'s."""
        if self.expand_fn is not None:
            return self.expand_fn(_stripped(record))
        return [(self.prompt(record), self.completion(record))]


def _stripped(record: Mapping[str, Any]) -> dict[str, Any]:
    # The reference strips question, answer and rationale before formatting (format.py), so do we.
    return {k: v.strip() if isinstance(v, str) else v for k, v in record.items()}


FORMATS: Registry[StudentFormat] = Registry("format", error=UnknownFormatError, base=StudentFormat)
"""Format name -> :class:`StudentFormat` (the one registry type of ftcot-hf, as tasks and teachers)."""


def register_format(fmt: StudentFormat) -> StudentFormat:
    """Make ``fmt`` available by its name (``--format``); a name already taken is an error."""
    FORMATS.check(fmt)
    FORMATS.register(fmt.name, fmt)
    return fmt


def get_format(name: str | StudentFormat) -> StudentFormat:
    if isinstance(name, StudentFormat):
        return name
    return FORMATS[name]


def layout_format(name: str, layout: Layout, description: str = "", **fields: Any) -> StudentFormat:
    """A :class:`StudentFormat` built from a :class:`Layout` (not registered); ``fields``: its other fields
    (``paper_method``, ``encoder_decoder_variant``)."""
    return StudentFormat(
        name=name,
        prompt_fn=layout.prompt,
        completion_fn=layout.completion,
        prefix=layout.prefix,
        required_columns=("question", "answer", *layout.fields),
        encoder_decoder=layout.encoder_decoder,
        stop=layout.stop,
        description=description,
        layout=layout,
        **fields,
    )


_UNSET: Any = object()


def make_format(
    base: str | StudentFormat,
    *,
    prompt_sep: str = _UNSET,
    answer_sep: str | None = _UNSET,
    stop: str | None = _UNSET,
    name: str | None = None,
    register: bool = False,
) -> StudentFormat:
    """A copy of a layout format with other separators.

    Args:
        base: a registered format name (or a format) built from a :class:`Layout`: ``ft_cot``, ``vanilla``,
            ``middle_*``, ``tail_*`` and their ``_t5`` variants.
        prompt_sep: text appended to the question (paper: ``" ###"``).
        answer_sep: text before ``" {answer}"`` (paper: ``" -->"``); its stripped text becomes the parsing prefix.
        stop: stop phrase after the answer (paper: ``"END"``); None for none.
        name: the new format's name (default: the base name with the changed separators).
        register: also add it to :data:`FORMATS` (so ``get_format(name)`` and the CLI find it).

    Example:
        >>> fmt = make_format("ft_cot", prompt_sep="\\n\\n###\\n\\n", answer_sep="\\n\\n-->\\n\\n")
        >>> fmt.completion({"question": "q", "rationale": "r", "answer": "yes"})
        ' r\\n\\n-->\\n\\n yes END'
    """
    fmt = get_format(base)
    if fmt.layout is None:
        layouts = ", ".join(n for n, f in FORMATS.items() if f.layout is not None)
        raise FtcotError(f"Format {fmt.name!r} has fixed text; separators can be changed for: {layouts}.")
    changes = {
        k: v for k, v in {"prompt_sep": prompt_sep, "answer_sep": answer_sep, "stop": stop}.items() if v is not _UNSET
    }
    layout = dataclasses.replace(fmt.layout, **changes)
    if name is None:
        name = fmt.name + "[" + ",".join(f"{k}={v!r}" for k, v in changes.items()) + "]"
    new = layout_format(name, layout, f"{fmt.description} (separators: {changes})")
    return register_format(new) if register else new


def format_dataset(
    dataset: Dataset,
    format: str | StudentFormat,  # noqa: A002 - the word users know
    *,
    eos_token: str | None = None,
    keep_columns: Sequence[str] = ("answer", "sample_index", "completion_index", "task"),
    num_proc: int | None = None,
) -> Dataset:
    """Turn records into TRL prompt/completion rows (plus the gold ``answer``, ``sample_index``...).

    Args:
        dataset: records with the columns the format needs (a task split, or a rationale dataset's train split).
        format: a format name or object. Inference-only formats give a ``prompt`` column only.
        eos_token: appended to each completion when given. ``SFTTrainer`` appends the tokenizer's EOS itself, so
            this is for other trainers (or to pin the EOS text in the data).
        keep_columns: columns carried over when present (the gold ``answer`` is what evaluation compares with).
        num_proc: processes for ``Dataset.map``.

    Returns:
        A ``Dataset`` with ``prompt`` (and ``completion`` for trainable formats) and the kept columns.

    Raises:
        EmptyDatasetError: the dataset has no rows.
        MissingColumnsError: a column the format needs is absent, or None in some rows.
    """
    fmt = get_format(format)
    if dataset.num_rows == 0:
        raise EmptyDatasetError(
            f"Cannot format an empty dataset with format {fmt.name!r}: it has no rows (columns: "
            f"{', '.join(dataset.column_names)}). Check the split and any filter (e.g. correct-only rationales)."
        )
    fmt.check_columns(dataset.column_names)
    for column in fmt.required_columns:
        values = dataset[column]
        bad = [i for i, v in enumerate(values) if v is None]
        if bad:
            where = dataset[bad[0]].get("sample_index", bad[0])
            raise MissingColumnsError(
                f"Format {fmt.name!r} needs column {column!r} in every row, but {len(bad)} of {dataset.num_rows} rows "
                f"have None there (first: sample_index {where}). Filter those rows or pick another format."
            )
    keep = [c for c in keep_columns if c in dataset.column_names]
    suffix = eos_token or ""
    if fmt.trainable and fmt.expand_fn is not None:

        def to_rows(batch: dict[str, list]) -> dict[str, list]:
            out: dict[str, list] = {"prompt": [], "completion": [], **{c: [] for c in keep}}
            for i in range(len(next(iter(batch.values())))):
                row = {k: v[i] for k, v in batch.items()}
                for prompt, completion in fmt.training_rows(row):
                    out["prompt"].append(prompt)
                    out["completion"].append(completion + suffix)
                    for c in keep:
                        out[c].append(row[c])
            return out

        return dataset.map(to_rows, batched=True, remove_columns=dataset.column_names, num_proc=num_proc,
                           desc=f"Formatting ({fmt.name})")  # fmt: skip

    def to_record(row: dict[str, Any]) -> dict[str, str]:
        out = {"prompt": fmt.prompt(row)}
        if fmt.trainable:
            out["completion"] = fmt.completion(row) + suffix
        return out

    return dataset.map(
        to_record,
        remove_columns=[c for c in dataset.column_names if c not in keep],
        num_proc=num_proc,
        desc=f"Formatting ({fmt.name})",
    )


# --- the paper's formats -------------------------------------------------------------------------------------------
register_format(
    layout_format(
        "ft_cot",
        Layout(),
        "Fine-tune-CoT: '{q} ###' -> ' {rationale} --> {answer} END'",
        paper_method="Fine-tune-CoT",
        encoder_decoder_variant="ft_cot_t5",
    )
)
register_format(
    layout_format(
        "vanilla",
        Layout(fields=(), answer_sep=None),
        "vanilla fine-tune baseline: '{q} ###' -> ' {answer} END'",
        paper_method="Fine-tune",
        encoder_decoder_variant="vanilla_t5",
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
_T5 = {"prompt_sep": "", "encoder_decoder": True}
register_format(
    layout_format(
        "ft_cot_t5",
        Layout(stop=None, **_T5),
        "Fine-tune-CoT for encoder-decoder students: '{q}' -> '{rationale} --> {answer}'",
        paper_method="Fine-tune-CoT",
    )
)
register_format(
    layout_format(
        "vanilla_t5",
        Layout(fields=(), answer_sep=None, stop=None, **_T5),
        "vanilla fine-tune for encoder-decoder students: '{q}' -> '{answer}'",
        paper_method="Fine-tune",
    )
)

# --- Teacher-LM placements (seed idea 2): fields in the middle or at the tail, singly or all three -----------------
for _placement in ("middle", "tail"):
    for _what, _fields in (*((f, (f,)) for f in TEACHER_FIELDS), ("triple", _TRIPLE)):
        _where = "between the question and the answer" if _placement == "middle" else "after the answer and END"
        register_format(
            layout_format(
                f"{_placement}_{_what}",
                Layout(fields=_fields, placement=_placement),
                f"Teacher-LM {_placement}: {', '.join(_fields)} {_where}",
                encoder_decoder_variant=f"{_placement}_{_what}_t5",
            )
        )
        register_format(
            layout_format(
                f"{_placement}_{_what}_t5",
                Layout(fields=_fields, placement=_placement, stop=END if _placement == "tail" else None, **_T5),
                f"Teacher-LM {_placement} for encoder-decoder students: {', '.join(_fields)} {_where}",
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
        paper_method="Zero-shot",
        encoder_decoder_variant="zero_shot_t5",
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
        paper_method="Zero-shot",
    )
)


# --- distilling step-by-step (Hsieh et al., 2023) as a format: two training rows per rationale, no custom loss ------
def _step_by_step_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"[label] {record['question']} ###", f" {record['answer']} {END}"),
        (f"[rationale] {record['question']} ###", f" {record['rationale']} {END}"),
    ]


register_format(
    StudentFormat(
        name="step_by_step",
        prompt_fn=lambda r: f"[label] {r['question']} ###",
        completion_fn=lambda r: f" {r['answer']} {END}",
        prefix=None,
        required_columns=("question", "answer", "rationale"),
        description="distilling step-by-step (Hsieh et al., 2023): '[label] {q} ###' -> answer and "
        "'[rationale] {q} ###' -> rationale; inference asks [label] only",
        expand_fn=_step_by_step_rows,
    )
)
