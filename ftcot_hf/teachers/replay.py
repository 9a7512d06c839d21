"""The ``replay`` teacher: serves recorded completions instead of calling a model.

Why: the paper's teacher (text-davinci-002 / GPT-3 175B) can no longer be called, but Kojima et al. published its
Zero-shot-CoT outputs for every question of the 12 test files, and the reference implementation's completion data
(when one has it) holds the paper's own teacher samples. Replaying them keeps the whole pipeline (stage 1 -> stage 2
-> filter -> fine-tune) identical to a live run, deterministic, free and offline, and the request cache treats a
replayed teacher like any other backend.

A :class:`ReplayTeacher` maps a prompt to its recorded samples (sample number ``j`` -> :class:`Generation`). A
prompt it has no recording for (or too few samples of) raises :class:`MissingRecordingError` naming the task, the
question's ``sample_index`` and the start of the prompt: a replay never invents an empty rationale.

Three sources:

* **Kojima et al.'s raw logs** (:meth:`ReplayTeacher.from_kojima_logs`): ``log/*_zero_shot_cot.log`` of
  kojima-takeshi188/zero_shot_cot, pinned by sha256 and resolved like every other source (download or offline
  mirror). Each question block is parsed, matched to OUR task record by question stem, and re-keyed by OUR prompts:
  stage 1 ``stage1_prompt(question)`` -> the recorded rationale, stage 2
  ``stage2_prompt(question, rationale, KOJIMA_ANSWER_TRIGGERS[task])`` -> the recorded answer completion. Where
  Kojima's option order differs from ours (Date Understanding: Kojima shuffled with its own RNG) the option letters
  in the answer and the letter mentions of the rationale are translated to our order by option text, so a replayed
  completion agrees with the prompt it is served for.
* **Our JSONL format** (:meth:`ReplayTeacher.from_jsonl`, written by :meth:`ReplayTeacher.to_jsonl`), one object
  per line::

      {"prompt": str, "completion": str, "finish_reason": "stop" | "length",
       "sample_index": int,        # optional: sample number j of this prompt (NOT the question's index), default 0
       "prompt_tokens": int,       # optional
       "completion_tokens": int,   # optional
       "task": str,                # optional: only used in error messages
       "question_index": int}      # optional: the question's sample_index, only used in error messages

  Other keys are ignored. A malformed line raises :class:`SourceFormatError` naming the file and line.
* **The reference implementation's completion data** (:meth:`ReplayTeacher.from_completion_data`), the
  ``{"metadata": ..., "data": {"<sample_index>": [sample, ...]}}`` JSON of itsnamgyu/reasoning-teacher's
  ``CompletionDataset`` (``reasoning_completion`` = rationale, ``completion`` = stage-2 answer,
  ``completion_index`` = sample number j), re-keyed by our prompts like the Kojima logs.

Finish reasons of the Kojima logs: the logs do not record them. Kojima's stage 1 ran without a stop string and with
``max_tokens=128`` (stage 2: 32), so a completion ended either at the model's end-of-text or at the token limit. We
mark a recording ``"length"`` when it does not end like finished text (``. ! ? ) " '``) AND an approximate GPT-2
token count (:func:`approx_tokens`; no tokenizer download) reaches 86% of the limit; otherwise ``"stop"``. On the
12 logs this marks about 1,500 of 9,706 rationales ``"length"``; a rationale cut exactly at a sentence end is
indistinguishable from a finished one and stays ``"stop"``. Token counts are left ``None`` (unknown).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.errors import SourceFormatError
from ftcot_hf.prompts import GENERIC_ANSWER_TRIGGER, KOJIMA_ANSWER_TRIGGERS, stage1_prompt, stage2_prompt
from ftcot_hf.tasks.sources import SourceFile, read_json, read_jsonl, resolve, sha256_of
from ftcot_hf.teachers.base import Generation, MissingRecordingError, Request, Teacher, register_teacher

logger = logging.getLogger(__name__)

REPLAY_FORMAT_VERSION = 1
"""Bumped whenever the way recordings are derived from a source changes (part of :meth:`ReplayTeacher.identity`),
so a request cache never serves a replay built by older parsing code."""

KOJIMA_REPO = "kojima-takeshi188/zero_shot_cot"
KOJIMA_COMMIT = "5ef330fcdeec0cd26aee27943504f91f8ec1c33c"
KOJIMA_LOG_LICENSE = "unknown (OpenAI model output)"
KOJIMA_MODEL = "text-davinci-002 (Kojima et al. Zero-shot-CoT logs)"
KOJIMA_COT_MAX_TOKENS = 128
"""``max_length_cot`` of every log's Namespace line: stage-1 token limit."""
KOJIMA_ANSWER_MAX_TOKENS = 32
"""``max_length_direct`` of every log's Namespace line: stage-2 token limit."""

KOJIMA_LOG_NAMES: dict[str, str] = {
    "single_eq": "singleeq",
    "addsub": "addsub",
    "multiarith": "multiarith",
    "gsm8k": "gsm8k",
    "aqua": "aqua",
    "svamp": "svamp",
    "date_understanding": "date_understanding",
    "tracking_shuffled_objects": "shuffled_objects",
    "last_letter_concatenation": "last_letters",
    "coin_flip": "coin_flip",
    "commonsense_qa": "commonsensqa",
    "strategy_qa": "strategyqa",
}
"""Our task name -> the stem of Kojima's ``log/{stem}_zero_shot_cot.log``."""

KOJIMA_LOG_SHA256: dict[str, str] = {
    "single_eq": "51bbcb0c0fcc8f5696cd4cd74d89e46d7e5d9ff8fb2e639c1664254a2ecde251",
    "addsub": "5a35a7d04ad18f17a5918ba9f456ef85598ffb4ab340d40abd510b316ec65ce4",
    "multiarith": "e2e3416d5f376b84513847b0ed2ac40fcfbe424b8279a18f0b6c980ff75fa351",
    "gsm8k": "cfb2d43b29762ca5fb09856899a6f6595c7deda6ff73c5e8a3becb8d791c54c4",
    "aqua": "743315681523f6c459bb9dee0d106e1bbf813059bb0ecc3a75a9bbf8917766ad",
    "svamp": "37043ef358b75e108860746c533d0c9be0f307ec3373959524778f1b8af5a75a",
    "date_understanding": "14090fec37b29d4b7053f6ccc8d3865b8ffd949d9d2f21ae71c55f145cb087c8",
    "tracking_shuffled_objects": "1bb4b95719d37b0cde221fa6d7fe40ab0aeb894d87973f48c6e1675b25301aa5",
    "last_letter_concatenation": "31e13b33aed4f1c8a920b10914fb31bc0965089afc714d0e72cf78a2f17387b5",
    "coin_flip": "6c5cd500498686106fad37b8ce85bed2bd26a790b6b1aaa8bec382a0d1103048",
    "commonsense_qa": "f8027dc6f4c85045ad7567dc71a9b5a4d69fb75af7cdf08ef809fcea617a2757",
    "strategy_qa": "9268254c7c2d86a96b0346d64f5b782440b17ded142589d160ebb39e53fde5c9",
}

_LETTERS = "ABCDEFGHIJ"
_COT_TRIGGER_LINE = "\nA: Let's think step by step."
_FINISHED_ENDINGS = tuple(".!?)\"'")
_LENGTH_FRACTION = 0.86
FINISH_REASONS = ("stop", "length")


def kojima_log_source(task: str) -> SourceFile:
    """The pinned ``log/{stem}_zero_shot_cot.log`` of ``task`` (public URL + sha256)."""
    if task not in KOJIMA_LOG_NAMES:
        from ftcot_hf.errors import UnknownTaskError

        raise UnknownTaskError(
            f"Kojima et al. published no Zero-shot-CoT log for task {task!r}; logs exist for: "
            f"{', '.join(KOJIMA_LOG_NAMES)}."
        )
    return SourceFile(
        KOJIMA_REPO,
        KOJIMA_COMMIT,
        f"log/{KOJIMA_LOG_NAMES[task]}_zero_shot_cot.log",
        KOJIMA_LOG_SHA256[task],
        KOJIMA_LOG_LICENSE,
    )


# --------------------------------------------------------------------------------------------------------------------
# Finish-reason heuristic
# --------------------------------------------------------------------------------------------------------------------

_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]+|\s+(?!\S)|\s+")


def approx_tokens(text: str) -> int:
    """A rough GPT-2/p50k token count without the tokenizer: GPT-2's pre-tokenisation, then long words and numbers
    split in chunks (5 letters, 3 digits) and every punctuation character counted. Good enough to tell a completion
    that ran into the token limit from one that is far below it; not exact."""
    n = 0
    for piece in _PRETOKEN.findall(text):
        s = piece.strip()
        if not s:
            n += 1
        elif s[0].isdigit():
            n += math.ceil(len(s) / 3)
        elif s[0].isascii() and s[0].isalpha():
            n += 1 if len(s) <= 7 else math.ceil(len(s) / 5)
        else:
            n += len(s)
    return n


def guess_finish_reason(text: str, max_tokens: int) -> str:
    """``"length"`` when ``text`` stops mid-sentence close to ``max_tokens`` (see the module docstring), else
    ``"stop"``. For recordings that did not keep the API's finish reason."""
    if text.rstrip().endswith(_FINISHED_ENDINGS):
        return "stop"
    return "length" if approx_tokens(text) >= _LENGTH_FRACTION * max_tokens else "stop"


# --------------------------------------------------------------------------------------------------------------------
# Kojima logs: parsing
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KojimaLogEntry:
    """One question block of a Kojima log, as printed (Kojima's question formatting and option letters)."""

    log_index: int
    """1-based position in the log ("{n}st data")."""
    question: str
    rationale: str
    """The stage-1 completion: the text after ``"A: Let's think step by step."`` up to the space Kojima inserted
    before the answer trigger."""
    answer_completion: str
    """The stage-2 completion: the text after the trigger Kojima appended, up to the ``pred_before`` line."""
    pred_mode: str
    gt: str

    @property
    def kojima_correct(self) -> bool:
        """Kojima's own verdict (string equality of ``pred_mode`` and ``GT``, as its ``main.py`` computes it)."""
        return self.pred_mode == self.gt


@dataclass(frozen=True)
class KojimaLog:
    """A parsed log file."""

    task: str
    path: str
    sha256: str
    trigger: str
    entries: tuple[KojimaLogEntry, ...]
    accuracy: float | None
    """The log's final ``accuracy :`` line (percent), None if the run was cut short."""

    def recomputed_accuracy(self) -> float:
        """Percent of entries Kojima scored correct: equals :attr:`accuracy` when the parse is right."""
        return 100.0 * sum(e.kojima_correct for e in self.entries) / max(len(self.entries), 1)


_BLOCK = re.compile(r"^\*{25}\n(\d+)st data\n(\d+)_th_sampling\n(.*?)\n\*{25}$", re.M | re.S)
_NAMESPACE_TRIGGER = re.compile(r"direct_answer_trigger=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
_ACCURACY = re.compile(r"^accuracy : ([0-9.eE+-]+)\s*$", re.M)


def _loose(text: str) -> str:
    # Kojima's answer_cleansing prints pred_before after dropping commas/colons/outer spaces for some tasks.
    return re.sub(r"[\s:,]", "", text)


def _answer_split(qa: str, trigger: str, pred_before: str, where: str) -> int:
    """Where the answer trigger Kojima appended starts in ``qa`` (rationale + " " + trigger + answer).

    Normally the LAST occurrence of the trigger (rationales often say "Therefore, the answer is" themselves), but
    the answer completion can contain the trigger too (it runs on for 32 tokens): the occurrence is the last one
    whose following text agrees with the ``pred_before`` line, which Kojima printed from the answer alone.
    """
    starts = [m.start() for m in re.finditer(re.escape(" " + trigger), qa)]
    if not starts:
        # Kojima's main.py prints x + z + " " + trigger + answer: the space is its separator, not model output.
        raise SourceFormatError(f"{where}: the answer trigger {trigger!r} (after a space) is missing.")
    target = _loose(pred_before)
    for at in reversed(starts):
        if _loose(qa[at + 1 + len(trigger) :]) == target:
            return at + 1
    logger.warning("%s: no answer trigger agrees with pred_before %r; using the last one.", where, pred_before[:60])
    return starts[-1] + 1


def parse_kojima_log(path: str | os.PathLike, task: str) -> KojimaLog:
    """Parse one raw ``*_zero_shot_cot.log``.

    The answer trigger is taken from the log's own Namespace line and must equal ``KOJIMA_ANSWER_TRIGGERS[task]``
    (the trigger our stage-2 prompts use). Within a block the LAST occurrence of the trigger whose following text
    agrees with the block's ``pred_before`` line splits rationale from answer (rationales often contain "Therefore,
    the answer is" themselves, and an answer that runs on can repeat the trigger: GSM8K #583, #621, AQuA #193).

    Raises:
        SourceFormatError: the file is not a Zero-shot-CoT log of this task (names the file and the block).
    """
    path = Path(path)
    text = path.read_bytes().decode("utf-8")
    expected = KOJIMA_ANSWER_TRIGGERS[task]
    m = _NAMESPACE_TRIGGER.search(text[:5000])
    if m is None:
        raise SourceFormatError(f"{path}: no Namespace line with direct_answer_trigger (not a Kojima log?).")
    trigger = ast.literal_eval(m.group(1))
    if trigger != expected:
        raise SourceFormatError(
            f"{path}: its answer trigger is {trigger!r} but task {task!r} uses {expected!r} "
            "(KOJIMA_ANSWER_TRIGGERS): is this the log of another task?"
        )
    entries: list[KojimaLogEntry] = []
    for block in _BLOCK.finditer(text):
        index, body = int(block.group(1)), block.group(3)
        where = f"{path}: block {index}st data (line {text.count(chr(10), 0, block.start()) + 1})"
        if block.group(2) != "1":
            raise SourceFormatError(f"{where}: sampling {block.group(2)}; only greedy logs (1_th_sampling) are read.")
        if not body.startswith("Q: "):
            raise SourceFormatError(f"{where}: does not start with 'Q: '.")
        a_at = body.find(_COT_TRIGGER_LINE)
        pred_at = body.find("\npred_before : ", a_at)
        if a_at < 0 or pred_at < 0:
            raise SourceFormatError(f"{where}: no {_COT_TRIGGER_LINE!r} line or no 'pred_before' line.")
        qa = body[a_at + len(_COT_TRIGGER_LINE) : pred_at]
        tail = body[pred_at + 1 :]
        pa, pm, gt = tail.rfind("\npred_after : "), tail.rfind("\npred_mode : "), tail.rfind("\nGT : ")
        if not 0 < pa < pm < gt:
            raise SourceFormatError(f"{where}: no 'pred_after' / 'pred_mode' / 'GT' lines.")
        t_at = _answer_split(qa, trigger, tail[len("pred_before : ") : pa], where)
        entries.append(
            KojimaLogEntry(
                log_index=index,
                question=body[3:a_at],
                rationale=qa[: t_at - 1],
                answer_completion=qa[t_at + len(trigger) :],
                pred_mode=tail[pm + len("\npred_mode : ") : gt],
                gt=tail[gt + len("\nGT : ") :],
            )
        )
    if not entries:
        raise SourceFormatError(f"{path}: no question blocks found (not a Zero-shot-CoT log?).")
    expected_indices = list(range(1, len(entries) + 1))
    if [e.log_index for e in entries] != expected_indices:
        raise SourceFormatError(f"{path}: question blocks are not numbered 1..{len(entries)} in order.")
    acc = _ACCURACY.findall(text)
    return KojimaLog(
        task=task,
        path=str(path),
        sha256=sha256_of(path),
        trigger=trigger,
        entries=tuple(entries),
        accuracy=float(acc[-1]) if acc else None,
    )


def read_kojima_log(task: str, *, data_dir: str | os.PathLike | None = None) -> KojimaLog:
    """Resolve (download or mirror, sha256-checked) and parse the log of ``task``."""
    return parse_kojima_log(resolve(kojima_log_source(task), data_dir=data_dir), task)


# --------------------------------------------------------------------------------------------------------------------
# Kojima logs: matching to our records
# --------------------------------------------------------------------------------------------------------------------

_CHOICES_MARK = re.compile(r"Answer [Cc]hoices:")
_WHICH_CHOICE = re.compile(r"\s*Which choice is true ?\?\s*$")


def question_stem(question: str) -> str:
    """The question without its options, its "Which choice is true?" line and with whitespace collapsed: the key on
    which Kojima's and our formatting of the same question agree."""
    marks = list(_CHOICES_MARK.finditer(question))
    if marks:
        question = question[: marks[-1].start()]
    question = _WHICH_CHOICE.sub("", question)
    return " ".join(question.split())


def _norm_option(text: str) -> str:
    # Whitespace is dropped altogether: Kojima's AQuA options gained spaces around parentheses ("(a−b) /2y").
    text = "".join(text.split())
    return text[:-1] if text.endswith(".") else text


def kojima_options(question: str) -> list[str]:
    """The option texts of a Kojima-formatted question (``Answer Choices: (A) x (B) y``), in Kojima's order."""
    marks = list(_CHOICES_MARK.finditer(question))
    if not marks:
        return []
    text = question[marks[-1].end() :]
    starts: list[tuple[int, int]] = []
    pos = 0
    for letter in _LETTERS:
        at = text.find(f"({letter})", pos)
        if at < 0:
            break
        starts.append((at, at + 3))
        pos = at + 3
    return [
        text[s[1] : (starts[i + 1][0] if i + 1 < len(starts) else len(text))].strip() for i, s in enumerate(starts)
    ]


def letter_map(kojima_opts: Sequence[str], our_opts: Sequence[str]) -> dict[str, str] | None:
    """Kojima letter -> our letter, matching options by text; None when the options do not correspond."""
    if len(kojima_opts) != len(our_opts):
        return None
    ours = [_norm_option(o) for o in our_opts]
    mapping: dict[str, str] = {}
    for i, text in enumerate(_norm_option(o) for o in kojima_opts):
        if ours[i] == text:  # same place (also settles duplicated option texts)
            mapping[_LETTERS[i]] = _LETTERS[i]
            continue
        hits = [j for j, o in enumerate(ours) if o == text]
        if len(hits) != 1:
            return None
        mapping[_LETTERS[i]] = _LETTERS[hits[0]]
    if len(set(mapping.values())) != len(mapping):
        return None
    return mapping


_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_NAMED_LETTER = re.compile(r"\b((?:[Aa]nswer|[Cc]hoice|[Oo]ption)s?(?: is|:)? )([A-J])(?![A-Za-z0-9])")
_LONE_LETTER = re.compile(r"(?<![A-Za-z0-9])([A-J])(?![A-Za-z0-9])")


def translate_rationale(text: str, mapping: Mapping[str, str]) -> str:
    """Rewrite the option letters a rationale cites (``(D)``, ``answer is D``) from Kojima's order to ours."""
    text = _PAREN_LETTER.sub(lambda m: f"({mapping.get(m.group(1), m.group(1))})", text)
    return _NAMED_LETTER.sub(lambda m: m.group(1) + mapping.get(m.group(2), m.group(2)), text)


def translate_answer(text: str, mapping: Mapping[str, str]) -> str:
    """Rewrite every stand-alone option letter of a (short) stage-2 answer from Kojima's order to ours."""
    return _LONE_LETTER.sub(lambda m: mapping.get(m.group(1), m.group(1)), text)


@dataclass(frozen=True)
class KojimaRecord:
    """One of OUR task records with the Kojima recording matched to it, in our option order."""

    task: str
    sample_index: int
    split: str
    question: str
    """Our question text (what our prompts contain)."""
    answer: str
    """Our gold answer."""
    log_index: int
    rationale: str
    answer_completion: str
    rationale_finish_reason: str
    answer_finish_reason: str
    letter_map: dict[str, str] | None = None
    """Kojima letter -> our letter where it is not the identity (the texts were translated), else None."""
    raw: KojimaLogEntry | None = field(default=None, repr=False, compare=False)

    @property
    def stage1_prompt(self) -> str:
        return stage1_prompt(self.question)

    @property
    def stage2_prompt(self) -> str:
        return stage2_prompt(self.question, self.rationale, KOJIMA_ANSWER_TRIGGERS[self.task])


def match_kojima_log(
    log: KojimaLog, dataset: Mapping[str, Iterable[Mapping[str, Any]]]
) -> tuple[list[KojimaRecord], list[KojimaLogEntry]]:
    """Match every log entry to one of our records by question stem (and, for multiple choice, by option texts).

    Duplicated questions (MultiArith's 20 duplicate pairs, one StrategyQA question) are assigned greedily, in log
    order, to distinct sample indices. Returns the matched records (sorted by sample_index) and the entries no
    record matched.
    """
    task = log.task
    by_stem: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    rows = sorted(((s, r) for s, rs in dataset.items() for r in rs), key=lambda sr: int(sr[1]["sample_index"]))
    for split, row in rows:
        by_stem.setdefault(question_stem(row["question"]), []).append((split, row))
    used: set[int] = set()
    matched: list[KojimaRecord] = []
    unmatched: list[KojimaLogEntry] = []
    for entry in log.entries:
        options = kojima_options(entry.question)
        chosen: tuple[str, Mapping[str, Any], dict[str, str] | None] | None = None
        for split, row in by_stem.get(question_stem(entry.question), []):
            if row["sample_index"] in used:
                continue
            mapping = None
            if options and row.get("choices"):
                mapping = letter_map(options, [c["text"] for c in row["choices"]])
                if mapping is None:
                    continue  # same stem, other options: another question
            chosen = (split, row, mapping)
            break
        if chosen is None:
            unmatched.append(entry)
            continue
        split, row, mapping = chosen
        used.add(row["sample_index"])
        rationale, answer = entry.rationale, entry.answer_completion
        if mapping is not None and any(k != v for k, v in mapping.items()):
            rationale, answer = translate_rationale(rationale, mapping), translate_answer(answer, mapping)
        else:
            mapping = None
        matched.append(
            KojimaRecord(
                task=task,
                sample_index=int(row["sample_index"]),
                split=split,
                question=row["question"],
                answer=row["answer"],
                log_index=entry.log_index,
                rationale=rationale,
                answer_completion=answer,
                rationale_finish_reason=guess_finish_reason(entry.rationale, KOJIMA_COT_MAX_TOKENS),
                answer_finish_reason=guess_finish_reason(entry.answer_completion, KOJIMA_ANSWER_MAX_TOKENS),
                letter_map=mapping,
                raw=entry,
            )
        )
    if unmatched:
        logger.warning(
            "%s: %d of %d Kojima log questions match none of our records (first: log #%d %r).",
            task,
            len(unmatched),
            len(log.entries),
            unmatched[0].log_index,
            unmatched[0].question[:80],
        )
    matched.sort(key=lambda r: r.sample_index)
    return matched, unmatched


def kojima_records(
    task: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    dataset: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
) -> list[KojimaRecord]:
    """Our records of ``task`` that Kojima's log covers, each with its recorded rationale and answer.

    Args:
        task: one of :data:`KOJIMA_LOG_NAMES`.
        data_dir: offline mirror (else ``$FTCOT_DATA_MIRROR``, else download), for the log and the task.
        cache_dir: ``datasets`` cache for :func:`ftcot_hf.load_task`.
        dataset: the task's splits if already loaded (split -> rows with ``sample_index``, ``question``, ``answer``
            and ``choices`` for multiple choice); loaded with ``load_task`` otherwise.
    """
    log = read_kojima_log(task, data_dir=data_dir)
    if dataset is None:
        from ftcot_hf.tasks.builder import load_task

        dataset = load_task(task, data_dir=data_dir, cache_dir=cache_dir)
    records, _ = match_kojima_log(log, dataset)
    return records


def kojima_teacher_accuracy(
    task: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    dataset: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    mode: str = "paper",
) -> dict[str, Any]:
    """Score the recorded stage-2 answers against OUR gold answers, as the pipeline's filter will.

    Why: it is the yield the replayed teacher will give (rationales kept = correct ones), and a check that the
    matching and letter translation are right (it should be close to the log's own ``accuracy :`` line).

    Returns:
        ``task``, ``all``/``train``/``test`` accuracy (fractions; None for a split with no covered record),
        ``n_all``/``n_train``/``n_test``, ``log_accuracy`` (the log's own line, as a fraction), ``unmatched``
        (log questions matching none of our records) and ``length`` (rationales marked ``"length"``).
    """
    from ftcot_hf.answers import score_completion

    log = read_kojima_log(task, data_dir=data_dir)
    if dataset is None:
        from ftcot_hf.tasks.builder import load_task

        dataset = load_task(task, data_dir=data_dir, cache_dir=cache_dir)
    records, unmatched = match_kojima_log(log, dataset)
    correct: dict[str, list[bool]] = {"all": [], "train": [], "test": []}
    for rec in records:
        ok = bool(score_completion(task, rec.answer_completion, rec.answer, prefix=None, mode=mode)["correct"])
        correct["all"].append(ok)
        correct.setdefault(rec.split, []).append(ok)
    result: dict[str, Any] = {"task": task, "mode": mode}
    for split, oks in correct.items():
        result[split] = sum(oks) / len(oks) if oks else None
        result[f"n_{split}"] = len(oks)
    result["log_accuracy"] = log.accuracy / 100 if log.accuracy is not None else None
    result["unmatched"] = len(unmatched)
    result["length"] = sum(r.rationale_finish_reason == "length" for r in records)
    return result


# --------------------------------------------------------------------------------------------------------------------
# The teacher
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingInfo:
    """Where a recording came from, for error messages and reports."""

    task: str | None = None
    sample_indices: tuple[int, ...] = ()
    """Our question index(es) whose prompt this is (several for duplicated questions)."""
    stage: int | None = None
    """1 (rationale) or 2 (answer) of Zero-shot-CoT, when known."""
    source: str = ""

    def describe(self) -> str:
        parts = [f"task={self.task or '?'}"]
        if self.sample_indices:
            parts.append("sample_index=" + "/".join(str(i) for i in self.sample_indices))
        if self.stage:
            parts.append(f"stage {self.stage}")
        if self.source:
            parts.append(f"from {self.source}")
        return ", ".join(parts)


def _extract_question(prompt: str) -> str | None:
    if not prompt.startswith("Q: "):
        return None
    end = prompt.find("\nA:")
    return prompt[3:end] if end >= 0 else None


@register_teacher("replay")
class ReplayTeacher(Teacher):
    """Serves recorded completions: ``prompt -> {sample number j: Generation}``.

    ``generate`` returns, for a request with ``first_index`` j and ``n`` samples, the recorded samples
    ``j..j+n-1``; the sampling parameters are not checked (a recording is what it is: greedy Kojima logs have one
    sample per prompt). Build one with :meth:`from_kojima_logs`, :meth:`from_jsonl`, :meth:`from_completion_data`
    or :meth:`from_source`, or directly from a mapping; combine several with :meth:`merge`.

    Example:
        >>> teacher = ReplayTeacher.from_kojima_logs(["multiarith"], data_dir="../shared/data")  # doctest: +SKIP
        >>> [(pos, gens)] = teacher.generate([Request(stage1_prompt(question))])  # doctest: +SKIP
    """

    def __init__(
        self,
        recordings: Mapping[str, Sequence[Generation] | Mapping[int, Generation]] | None = None,
        *,
        model: str = "recorded completions",
        info: Mapping[str, RecordingInfo] | None = None,
        sources: Sequence[str] = (),
    ):
        """
        Args:
            recordings: prompt -> its samples, as a list (index = sample number) or a ``{j: Generation}`` mapping.
            model: a human-readable name of what was recorded (part of :meth:`identity`).
            info: prompt -> where it came from (task, sample_index), used in :class:`MissingRecordingError`.
            sources: descriptions of the files the recordings were read from (``url@sha256``), for reports.
        """
        self.model = model
        self.sources: tuple[str, ...] = tuple(sources)
        self._samples: dict[str, dict[int, Generation]] = {}
        self._info: dict[str, RecordingInfo] = {}
        self._by_question: dict[str, RecordingInfo] = {}
        self._fingerprint: str | None = None
        for prompt, gens in (recordings or {}).items():
            items = gens.items() if isinstance(gens, Mapping) else enumerate(gens)
            for j, gen in items:
                self.add(prompt, gen, sample=j, info=(info or {}).get(prompt))

    # -- building ----------------------------------------------------------------------------------------------------

    def add(self, prompt: str, generation: Generation, *, sample: int = 0, info: RecordingInfo | None = None) -> bool:
        """Record sample ``sample`` of ``prompt``. An identical re-recording is a no-op; a different one keeps the
        first (returns False, logged at debug level: duplicated questions of a log are expected to collide)."""
        if not isinstance(generation, Generation):
            raise TypeError(f"expected a Generation, got {type(generation).__name__}")
        samples = self._samples.setdefault(prompt, {})
        old = samples.get(sample)
        if old is not None:
            if old != generation:
                logger.debug("Keeping the first of two recordings of sample %d of %r.", sample, prompt[:80])
            if info is not None:
                self._info[prompt] = _merge_info(self._info[prompt], info) if prompt in self._info else info
            return old == generation
        samples[sample] = generation
        self._fingerprint = None
        if info is not None:
            self._info[prompt] = _merge_info(self._info[prompt], info) if prompt in self._info else info
            question = _extract_question(prompt)
            if question is not None and info.stage == 1:
                self._by_question.setdefault(question, info)
        return True

    @classmethod
    def merge(cls, *teachers: ReplayTeacher, model: str | None = None) -> ReplayTeacher:
        """One teacher serving the recordings of all ``teachers`` (the first recording of a prompt wins)."""
        merged = cls(model=model or " + ".join(dict.fromkeys(t.model for t in teachers)))
        for t in teachers:
            merged.sources += t.sources
            for prompt, samples in t._samples.items():
                for j, gen in samples.items():
                    merged.add(prompt, gen, sample=j, info=t._info.get(prompt))
        return merged

    @classmethod
    def from_kojima_records(cls, records: Iterable[KojimaRecord], *, sources: Sequence[str] = ()) -> ReplayTeacher:
        """Key matched Kojima recordings by our stage-1 and stage-2 prompts."""
        teacher = cls(model=KOJIMA_MODEL, sources=sources)
        for rec in records:
            source = f"{KOJIMA_LOG_NAMES[rec.task]}_zero_shot_cot.log #{rec.log_index}"
            teacher.add(
                rec.stage1_prompt,
                Generation(rec.rationale, rec.rationale_finish_reason),
                info=RecordingInfo(rec.task, (rec.sample_index,), 1, source),
            )
            teacher.add(
                rec.stage2_prompt,
                Generation(rec.answer_completion, rec.answer_finish_reason),
                info=RecordingInfo(rec.task, (rec.sample_index,), 2, source),
            )
        return teacher

    @classmethod
    def from_kojima_logs(
        cls,
        tasks: Sequence[str] | None = None,
        *,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        datasets: Mapping[str, Mapping[str, Iterable[Mapping[str, Any]]]] | None = None,
    ) -> ReplayTeacher:
        """The text-davinci-002 Zero-shot-CoT teacher of Kojima et al., for ``tasks`` (None or empty: all 12).

        Each log is resolved (downloaded from its pinned URL, or read from the offline mirror ``data_dir`` /
        ``$FTCOT_DATA_MIRROR``; sha256 checked), parsed, and matched to our records of the task (loaded with
        :func:`ftcot_hf.load_task` unless given in ``datasets``: task -> split -> rows). One greedy sample per
        prompt: requests for more than one sample raise :class:`MissingRecordingError`.

        Raises:
            ChecksumMismatchError / MissingSourceError: a log is not the pinned file / is absent from the mirror.
            SourceFormatError: a log does not parse.
        """
        tasks = list(tasks) if tasks else list(KOJIMA_LOG_NAMES)
        records: list[KojimaRecord] = []
        sources: list[str] = []
        for task in tasks:
            log = read_kojima_log(task, data_dir=data_dir)
            rows = (datasets or {}).get(task)
            if rows is None:
                from ftcot_hf.tasks.builder import load_task

                rows = load_task(task, data_dir=data_dir, cache_dir=cache_dir)
            matched, _ = match_kojima_log(log, rows)
            records += matched
            sources.append(f"{kojima_log_source(task).url}@sha256:{log.sha256}")
            logger.info("replay: %s: %d Kojima recordings (log: %d questions).", task, len(matched), len(log.entries))
        return cls.from_kojima_records(records, sources=sources)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, *, model: str | None = None) -> ReplayTeacher:
        """Read our JSONL recording format (see the module docstring).

        Raises:
            SourceFormatError: a malformed line, a missing or mistyped field, or two different recordings of the
                same prompt and sample (names the file and line).
        """
        path = Path(path)
        teacher = cls(model=model or f"recording {path.name}", sources=[f"{path}@sha256:{sha256_of(path)}"])
        lineno = 0
        for obj in _numbered(read_jsonl(path), path):
            lineno, row = obj
            where = f"{path}:{lineno}"
            if not isinstance(row, dict):
                raise SourceFormatError(f"{where}: expected a JSON object, got {type(row).__name__}.")
            prompt = _typed(row, "prompt", str, where)
            completion = _typed(row, "completion", str, where)
            finish = _typed(row, "finish_reason", str, where)
            if finish not in FINISH_REASONS:
                raise SourceFormatError(f"{where}: finish_reason is {finish!r}; use 'stop' or 'length'.")
            sample = _typed(row, "sample_index", int, where, default=0)
            if sample < 0:
                raise SourceFormatError(f"{where}: sample_index must be >= 0 (got {sample}).")
            gen = Generation(
                completion,
                finish,
                _typed(row, "prompt_tokens", int, where, default=None),
                _typed(row, "completion_tokens", int, where, default=None),
            )
            task = _typed(row, "task", str, where, default=None)
            q_index = _typed(row, "question_index", int, where, default=None)
            info = RecordingInfo(task, (q_index,) if q_index is not None else (), None, where)
            if not teacher.add(prompt, gen, sample=sample, info=info):
                raise SourceFormatError(
                    f"{where}: a different recording of sample {sample} of this prompt was already read "
                    f"(prompt {prompt[:60]!r})."
                )
        logger.info("replay: read %d prompts from %s (%d lines).", len(teacher), path, lineno)
        return teacher

    @classmethod
    def from_completion_data(
        cls,
        path: str | os.PathLike,
        task: str,
        *,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        dataset: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        trigger: str = GENERIC_ANSWER_TRIGGER,
        model: str | None = None,
    ) -> ReplayTeacher:
        """Read a completion-data JSON of the reference implementation (itsnamgyu/reasoning-teacher).

        Each sample ``{"sample_index", "completion_index", "question", "reasoning_completion", "completion",
        "finish_reason", "reasoning_finish_reason"?...}`` is matched to our record by ``sample_index`` (its
        ``question`` must agree with ours up to whitespace) and keyed by our prompts: stage 1 -> the rationale,
        stage 2 (with ``trigger``; the reference's is the generic ``"\\nTherefore, the answer is"``) -> the answer.
        ``completion_index`` is the sample number j. A sample without ``completion`` (stage 2 not run) gives a
        stage-1 recording only. The stage-1 finish reason is ``reasoning_finish_reason`` where present, else
        guessed as for the Kojima logs (128 tokens).

        Raises:
            SourceFormatError: malformed JSON, a missing field, an unknown sample_index, or a question that is not
                ours (names the file and the sample).
        """
        path = Path(path)
        raw = read_json(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            raise SourceFormatError(f"{path}: expected {{'metadata': {{...}}, 'data': {{sample_index: [...]}}}}.")
        meta = raw.get("metadata") or {}
        if meta.get("dataset_key") not in (None, task):
            raise SourceFormatError(f"{path}: its metadata.dataset_key is {meta['dataset_key']!r}, not {task!r}.")
        if meta.get("prediction_template") not in (None, "zs_cot"):
            logger.warning(
                "%s: prediction_template is %r, not 'zs_cot': replaying it as Zero-shot-CoT anyway.",
                path,
                meta["prediction_template"],
            )
        if dataset is None:
            from ftcot_hf.tasks.builder import load_task

            dataset = load_task(task, data_dir=data_dir, cache_dir=cache_dir)
        ours = {int(row["sample_index"]): row for _, row in ((s, r) for s, rows in dataset.items() for r in rows)}
        name = model or f"{meta.get('base_model', 'unknown model')} (reasoning-teacher completion data)"
        teacher = cls(model=name, sources=[f"{path}@sha256:{sha256_of(path)}"])
        for key, samples in raw["data"].items():
            where = f"{path}: data[{key!r}]"
            try:
                index = int(key)
            except ValueError:
                raise SourceFormatError(f"{where}: the key is not a sample index.") from None
            if index not in ours:
                raise SourceFormatError(f"{where}: task {task!r} has no record with sample_index {index}.")
            if not isinstance(samples, list):
                raise SourceFormatError(f"{where}: expected a list of completion samples.")
            question = ours[index]["question"]
            for k, sample in enumerate(samples):
                here = f"{where}[{k}]"
                if not isinstance(sample, dict):
                    raise SourceFormatError(f"{here}: expected an object.")
                j = _typed(sample, "completion_index", int, here, default=k)
                if _typed(sample, "sample_index", int, here, default=index) != index:
                    raise SourceFormatError(f"{here}: its sample_index {sample['sample_index']} is not {index}.")
                theirs = _typed(sample, "question", str, here, default=None)
                if theirs is not None and " ".join(theirs.split()) != " ".join(question.split()):
                    raise SourceFormatError(
                        f"{here}: its question {theirs[:60]!r} is not our sample {index} ({question[:60]!r}): "
                        "was the file made for another task or version of the dataset?"
                    )
                rationale = _typed(sample, "reasoning_completion", str, here)
                finish1 = _typed(sample, "reasoning_finish_reason", str, here, default=None)
                src = f"{path.name} sample {index} completion {j}"
                teacher.add(
                    stage1_prompt(question),
                    Generation(rationale, finish1 or guess_finish_reason(rationale, KOJIMA_COT_MAX_TOKENS)),
                    sample=j,
                    info=RecordingInfo(task, (index,), 1, src),
                )
                answer = _typed(sample, "completion", str, here, default=None)
                if answer is None:
                    continue
                finish2 = _typed(sample, "finish_reason", str, here, default=None) or "stop"
                teacher.add(
                    stage2_prompt(question, rationale, trigger),
                    Generation(answer, finish2),
                    # Stage 2 is greedy on each sampled rationale: one answer per stage-2 prompt.
                    sample=0,
                    info=RecordingInfo(task, (index,), 2, src),
                )
        logger.info("replay: read %d prompts of %s from %s.", len(teacher), task, path)
        return teacher

    @classmethod
    def from_source(
        cls,
        source: str | os.PathLike,
        *,
        tasks: Sequence[str] | None = None,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> ReplayTeacher:
        """One entry point for configuration files and the CLI: ``"kojima"`` (Kojima logs of ``tasks``), a
        ``.jsonl`` file (our format) or a ``.json`` file (reference completion data of the one task in
        ``tasks``)."""
        text = os.fspath(source)
        if text == "kojima":
            return cls.from_kojima_logs(tasks, data_dir=data_dir, cache_dir=cache_dir)
        if text.endswith(".jsonl"):
            return cls.from_jsonl(text)
        if text.endswith(".json"):
            if not tasks or len(tasks) != 1:
                raise ValueError(f"Reading completion data {text} needs exactly one task (got {tasks!r}).")
            return cls.from_completion_data(text, tasks[0], data_dir=data_dir, cache_dir=cache_dir)
        raise ValueError(
            f"Unknown replay source {text!r}: use 'kojima', a .jsonl recording or a reasoning-teacher .json file."
        )

    def to_jsonl(self, path: str | os.PathLike) -> Path:
        """Write every recording in our JSONL format (readable by :meth:`from_jsonl`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for prompt, samples in self._samples.items():
                info = self._info.get(prompt)
                for j in sorted(samples):
                    gen = samples[j]
                    row: dict[str, Any] = {
                        "prompt": prompt,
                        "completion": gen.text,
                        "finish_reason": gen.finish_reason,
                        "sample_index": j,
                    }
                    if gen.prompt_tokens is not None:
                        row["prompt_tokens"] = gen.prompt_tokens
                    if gen.completion_tokens is not None:
                        row["completion_tokens"] = gen.completion_tokens
                    if info is not None and info.task:
                        row["task"] = info.task
                    if info is not None and info.sample_indices:
                        row["question_index"] = info.sample_indices[0]
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path

    # -- serving ------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._samples)

    def __contains__(self, prompt: object) -> bool:
        return prompt in self._samples

    def prompts(self) -> list[str]:
        return list(self._samples)

    def info(self, prompt: str) -> RecordingInfo | None:
        """Where the recording of ``prompt`` came from (None if unknown or not recorded)."""
        return self._info.get(prompt)

    def samples(self, prompt: str) -> dict[int, Generation]:
        """The recorded samples of ``prompt`` (sample number -> Generation); empty if none."""
        return dict(self._samples.get(prompt, {}))

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        """Yield ``(position, recorded samples first_index..first_index+n-1)`` in request order.

        Raises:
            MissingRecordingError: a prompt is not recorded, or not with that many samples.
        """
        for pos, request in enumerate(requests):
            samples = self._samples.get(request.prompt)
            wanted = range(request.first_index, request.first_index + request.n)
            if samples is None:
                raise MissingRecordingError(self._missing(request, None))
            missing = [j for j in wanted if j not in samples]
            if missing:
                raise MissingRecordingError(self._missing(request, samples, missing[0]))
            yield pos, [samples[j] for j in wanted]

    def _missing(self, request: Request, samples: Mapping[int, Generation] | None, j: int | None = None) -> str:
        info = self._info.get(request.prompt)
        hint = ""
        if info is None:
            question = _extract_question(request.prompt)
            info = self._by_question.get(question) if question is not None else None
            if info is not None:
                kind = "stage-1" if request.prompt.endswith("\nA: Let's think step by step.") else "stage-2"
                hint = (
                    f" Its question is recorded ({info.describe()}) but not this {kind} prompt: the trigger or the "
                    "rationale in it differs from the recorded one (stage 2 must be built from the replayed "
                    "rationale, unmodified, with the recording's answer trigger)."
                )
        where = info.describe() if info is not None else "task=?, sample_index=?"
        head = f"Replay teacher {self.model!r} has no recording for prompt {request.prompt[:160]!r} ({where})"
        if samples is None:
            return f"{head}.{hint} Recorded prompts: {len(self._samples)}."
        have = sorted(samples)
        return (
            f"{head} for sample_index {j}: requested samples {request.first_index}.."
            f"{request.first_index + request.n - 1}, recorded {have}. Ask for fewer samples (D) or record more: "
            "greedy recordings such as Kojima's logs have one sample per prompt."
        )

    def fingerprint(self) -> str:
        """A hash of every recording (prompt, sample number, text, finish reason, token counts): two teachers
        with the same fingerprint serve the same thing."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"replay-v{REPLAY_FORMAT_VERSION}".encode())
            for prompt in sorted(self._samples):
                for j, gen in sorted(self._samples[prompt].items()):
                    payload = [prompt, j, gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens]
                    digest.update(json.dumps(payload, ensure_ascii=False).encode())
                    digest.update(b"\0")
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def identity(self) -> dict[str, Any]:
        """``backend``, ``model`` and ``recording`` (the :meth:`fingerprint`): different recordings never share
        request-cache entries, the same recordings loaded twice do."""
        return {"backend": self.backend, "model": self.model, "recording": self.fingerprint()}


def _merge_info(old: RecordingInfo, new: RecordingInfo) -> RecordingInfo:
    indices = old.sample_indices + tuple(i for i in new.sample_indices if i not in old.sample_indices)
    return RecordingInfo(old.task or new.task, indices, old.stage or new.stage, old.source or new.source)


def _numbered(rows: Iterator[dict], path: Path) -> Iterator[tuple[int, Any]]:
    # read_jsonl skips blank lines, so recover the line numbers by reading alongside it.
    with open(path, encoding="utf-8") as f:
        numbers = (n for n, line in enumerate(f, start=1) if line.strip())
        for row in rows:
            yield next(numbers), row


_MISSING = object()


def _typed(row: Mapping[str, Any], key: str, kind: type, where: str, default: Any = _MISSING) -> Any:
    """``row[key]`` checked to be a ``kind`` (bool is not an int); a SourceFormatError naming ``where`` otherwise."""
    if key not in row or row[key] is None:
        if default is _MISSING:
            raise SourceFormatError(f"{where}: missing field {key!r} (fields: {sorted(row)}).")
        return default
    value = row[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SourceFormatError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}.")
    return value


__all__ = [
    "KOJIMA_LOG_NAMES",
    "KOJIMA_LOG_SHA256",
    "KOJIMA_MODEL",
    "KojimaLog",
    "KojimaLogEntry",
    "KojimaRecord",
    "RecordingInfo",
    "ReplayTeacher",
    "approx_tokens",
    "guess_finish_reason",
    "kojima_log_source",
    "kojima_records",
    "kojima_teacher_accuracy",
    "match_kojima_log",
    "parse_kojima_log",
    "read_kojima_log",
]
