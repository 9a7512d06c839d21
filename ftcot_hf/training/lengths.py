"""Sequence lengths: ``max_length`` against the student's positions, and the rows that ``max_length`` truncates.

Reasoning traces run to thousands of tokens, and TRL truncates every longer row silently: the end of the completion
(the answer, END and EOS, i.e. what teaches the student to answer and stop) is what is cut. The run says how many
rows that hit, once, and records it in ``train_summary.json``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

_POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_CHUNK = 1024


def student_positions(model: Any) -> int | None:
    """How many positions a decoder-only student has (None: unknown, or an encoder-decoder with relative ones)."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for name in _POSITION_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def cap_max_length(config: Any, model: Any, student: str) -> int | None:
    """Cap ``config.max_length`` at the student's positions; the positions (None if unknown).

    Capped rather than refused: the default (1024, the paper's 512 + 512) exceeds some students' positions (a
    512-position model), and a row longer than the positions cannot be trained on whole anyway. The warning is
    :func:`report_truncation`'s (one, naming the cap and what it cut)."""
    positions = student_positions(model)
    if positions is None:
        return None
    if config.max_length is None or config.max_length > positions:
        logger.debug("max_length %s capped to the %d positions of %s", config.max_length, positions, student)
        config.max_length = positions
    return positions


@dataclass
class TruncationReport:
    """Rows longer than the limit: counted before training, recorded in ``train_summary.json``."""

    rows: int
    truncated: int
    longest: int
    max_length: int
    dropped: int = 0
    """Rows whose prompt alone fills ``max_length``: nothing of the completion is left, so TRL drops them."""
    limit: str = ""
    """The limit in words: ``max_length 512`` or ``max_source_length 512 / max_target_length 512``."""
    capped_from: str | None = None
    """The max_length asked for ("4096", "none") when it was capped at the student's positions."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self, positions: int | None) -> str:
        limit = self.limit or f"max_length {self.max_length:,}"
        if self.capped_from is not None:
            limit += f" (--max_length {self.capped_from} capped to the student's positions)"
            fix = "Use a student with more positions, or keep shorter rationales"
        else:
            flags = "--" + " / --".join(part.split()[0] for part in limit.split(" / "))
            room = f" (the student has {positions:,} positions)" if positions and positions > self.max_length else ""
            fix = f"Raise {flags}{room}, or keep shorter rationales"
        dropped = f"; {self.dropped:,} of them have a prompt that long alone and were dropped" if self.dropped else ""
        return (
            f"{self.truncated:,} of {self.rows:,} training rows are longer than {limit} and were truncated "
            f"(longest {self.longest:,} tokens){dropped}: their ends (the answer, END and EOS) are not learnt. "
            f"{fix} (ftcot teach --max_rationale_tokens)."
        )


def _lengths(tokenizer: Any, texts: list[str], **kwargs: Any) -> list[int]:
    out: list[int] = []
    for start in range(0, len(texts), _CHUNK):
        out.extend(len(ids) for ids in tokenizer(texts[start : start + _CHUNK], **kwargs)["input_ids"])
    return out


def count_truncated(rows: Dataset, tokenizer: Any, max_length: int | None) -> TruncationReport | None:
    """Prompt/completion rows as TRL tokenizes them (prompt + completion + EOS) against ``max_length``; None when
    nothing can be said (no limit, or chat-format rows)."""
    if max_length is None or not {"prompt", "completion"} <= set(rows.column_names) or rows.num_rows == 0:
        return None
    prompts, completions = rows["prompt"], rows["completion"]
    if not all(isinstance(p, str) for p in prompts[:1] + completions[:1]):
        return None
    eos = tokenizer.eos_token or ""
    full = _lengths(tokenizer, [p + c + (eos if not c.endswith(eos) else "") for p, c in zip(prompts, completions,
                                                                                          strict=True)])  # fmt: skip
    over = [i for i, n in enumerate(full) if n > max_length]
    dropped = 0
    if over:
        prompt_lengths = _lengths(tokenizer, [prompts[i] for i in over])
        dropped = sum(n >= max_length for n in prompt_lengths)
    return TruncationReport(rows=len(full), truncated=len(over), longest=max(full), max_length=max_length,
                            dropped=dropped, limit=f"max_length {max_length:,}")  # fmt: skip


def count_truncated_seq2seq(rows: Dataset, tokenizer: Any, max_source: int, max_target: int) -> TruncationReport:
    """Encoder-decoder rows as ``tokenize_seq2seq`` builds them: a row counts when its input, or its target with
    EOS (T5 tokenizers add it, others get it appended), exceeds its limit."""
    sources = _lengths(tokenizer, rows["prompt"])
    eos = tokenizer.eos_token_id
    targets: list[int] = []
    completions = rows["completion"]
    for start in range(0, len(completions), _CHUNK):
        for ids in tokenizer(text_target=completions[start : start + _CHUNK])["input_ids"]:
            targets.append(len(ids) + (0 if eos is None or (ids and ids[-1] == eos) else 1))
    over = sum(s > max_source or t > max_target for s, t in zip(sources, targets, strict=True))
    return TruncationReport(rows=len(sources), truncated=over, longest=max(max(sources), max(targets)),
                            max_length=max(max_source, max_target),
                            limit=f"max_source_length {max_source:,} / max_target_length {max_target:,}")  # fmt: skip


def report_truncation(
    report: TruncationReport | None, positions: int | None, *, capped_from: str | None = None, quiet_cap: bool = False
) -> None:
    """One warning about lengths: the rows truncated (naming a cap at the student's positions), or else the cap
    alone (``quiet_cap``: the default max_length, capped without cutting a row, is only logged). Refuse when
    truncation leaves nothing to train on: TRL drops every row whose prompt alone fills max_length, and training on
    an empty dataset ends in an IndexError deep inside datasets."""
    if report is not None and report.truncated and report.dropped == report.rows:
        room = f" (the student has {positions:,} positions)" if positions and positions > report.max_length else ""
        raise FtcotError(
            f"Every one of the {report.rows:,} training rows has a prompt of max_length {report.max_length:,} tokens "
            f"or more on its own: nothing of a completion is left to train on. Raise --max_length{room}."
        )
    if os.environ.get("RANK", "0") not in ("", "0"):  # once per run, not once per DDP process
        return
    if report is not None and report.truncated:
        report.capped_from = capped_from
        logger.warning("%s", report.message(positions))
    elif capped_from is not None:
        (logger.info if quiet_cap else logger.warning)(
            "--max_length %s is more than the %d positions of the student: capped to %d (no training row is longer).",
            capped_from, positions, positions,
        )  # fmt: skip
