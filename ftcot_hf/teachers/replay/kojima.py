"""Kojima et al.'s raw Zero-shot-CoT logs: where they are, how a log is parsed, how its questions are matched to OUR
task records, and what the recorded teacher scores on our gold answers.

``log/*_zero_shot_cot.log`` of kojima-takeshi188/zero_shot_cot is pinned by sha256 and resolved like every other
source (download or offline mirror). Each question block is parsed (:func:`parse_kojima_log`) and matched to our
record by question stem (:func:`match_kojima_log`); a matched :class:`KojimaRecord` is keyed by OUR prompts: stage 1
``stage1_prompt(question)`` -> the recorded rationale, stage 2
``stage2_prompt(question, rationale, TASKS[task].kojima_trigger)`` -> the recorded answer completion
(:meth:`ReplayTeacher.from_kojima_records` serves them). Where Kojima's option order differs from ours (Date
Understanding: Kojima shuffled with its own RNG) the option letters in the answer and the letter mentions of the
rationale are translated to our order by option text, so a replayed completion agrees with the prompt it is served
for.

The logs do not record finish reasons: they are guessed from the logs' token limits
(:data:`KOJIMA_COT_MAX_TOKENS`, :data:`KOJIMA_ANSWER_MAX_TOKENS`) with
:func:`~ftcot_hf.teachers.replay.recordings.guess_finish_reason`.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.errors import SourceFormatError, UnknownTaskError
from ftcot_hf.tasks import TASKS, score_completion
from ftcot_hf.tasks.prompts import ANSWER_MAX_TOKENS, RATIONALE_MAX_TOKENS, stage1_prompt, stage2_prompt
from ftcot_hf.tasks.sources import KOJIMA_COMMIT, KOJIMA_REPO, SourceFile, resolve, sha256_of
from ftcot_hf.teachers.replay.recordings import guess_finish_reason

logger = logging.getLogger(__name__)

KOJIMA_LOG_LICENSE = "unknown (OpenAI model output)"
KOJIMA_MODEL = "text-davinci-002 (Kojima et al. Zero-shot-CoT logs)"
KOJIMA_COT_MAX_TOKENS = RATIONALE_MAX_TOKENS
"""``max_length_cot`` of every log's Namespace line: stage-1 token limit."""
KOJIMA_ANSWER_MAX_TOKENS = ANSWER_MAX_TOKENS
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


def kojima_log_source(task: str) -> SourceFile:
    """The pinned ``log/{stem}_zero_shot_cot.log`` of ``task`` (public URL + sha256)."""
    if task not in KOJIMA_LOG_NAMES:
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

    The answer trigger is taken from the log's own Namespace line and must equal the task's ``kojima_trigger``
    (the trigger our stage-2 prompts use). Within a block the LAST occurrence of the trigger whose following text
    agrees with the block's ``pred_before`` line splits rationale from answer (rationales often contain "Therefore,
    the answer is" themselves, and an answer that runs on can repeat the trigger: GSM8K #583, #621, AQuA #193).

    Raises:
        SourceFormatError: the file is not a Zero-shot-CoT log of this task (names the file and the block).
    """
    path = Path(path)
    text = path.read_bytes().decode("utf-8")
    expected = TASKS[task].kojima_trigger
    m = _NAMESPACE_TRIGGER.search(text[:5000])
    if m is None:
        raise SourceFormatError(f"{path}: no Namespace line with direct_answer_trigger (not a Kojima log?).")
    trigger = ast.literal_eval(m.group(1))
    if trigger != expected:
        raise SourceFormatError(
            f"{path}: its answer trigger is {trigger!r} but task {task!r} uses {expected!r} "
            "(Task.kojima_trigger): is this the log of another task?"
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
        return stage2_prompt(self.question, self.rationale, TASKS[self.task].kojima_trigger)


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
        from ftcot_hf.tasks.builder import load_task  # heavy: imports datasets

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

    log = read_kojima_log(task, data_dir=data_dir)
    if dataset is None:
        from ftcot_hf.tasks.builder import load_task  # heavy: imports datasets

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
