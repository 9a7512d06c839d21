"""The ``replay`` teacher: serves recorded completions instead of calling a model.

:class:`ReplayTeacher` maps a prompt to its recorded samples (sample number ``j`` -> :class:`Generation`). A prompt
it has no recording for (or too few samples of) raises :class:`MissingRecordingError` naming the task, the
question's ``sample_index`` and the start of the prompt: a replay never invents an empty rationale. The sources it
reads are parsed in :mod:`~ftcot_hf.teachers.replay.kojima` (Kojima et al.'s logs) and
:mod:`~ftcot_hf.teachers.replay.recordings` (our JSONL format, the reference's completion data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ftcot_hf.errors import SourceFormatError
from ftcot_hf.tasks.prompts import GENERIC_ANSWER_TRIGGER
from ftcot_hf.tasks.sources import sha256_of
from ftcot_hf.teachers.base import Generation, MissingRecordingError, Request, Teacher, register_teacher
from ftcot_hf.teachers.replay.kojima import (
    KOJIMA_COT_MAX_TOKENS,
    KOJIMA_LOG_NAMES,
    KOJIMA_MODEL,
    KojimaRecord,
    kojima_log_source,
    match_kojima_log,
    read_kojima_log,
)
from ftcot_hf.teachers.replay.recordings import RecordingInfo, read_completion_data, read_ftcot_jsonl

logger = logging.getLogger(__name__)

REPLAY_FORMAT_VERSION = 1
"""Bumped whenever the way recordings are derived from a source changes (part of :meth:`ReplayTeacher.identity`),
so a request cache never serves a replay built by older parsing code."""


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
    sample per prompt). Build one with :meth:`from_kojima_logs`, :meth:`from_jsonl`, :meth:`from_completion_data`,
    :meth:`from_source` or :meth:`from_config` (what ``ftcot teach`` calls), or directly from a mapping; combine
    several with :meth:`merge`.

    Example:
        >>> teacher = ReplayTeacher.from_kojima_logs(["multiarith"], data_dir="../shared/data")  # doctest: +SKIP
        >>> [(pos, gens)] = teacher.generate([Request(stage1_prompt(question))])  # doctest: +SKIP
    """

    recorded = True

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
                self._info[prompt] = self._info[prompt].merged(info) if prompt in self._info else info
            return old == generation
        samples[sample] = generation
        self._fingerprint = None
        if info is not None:
            self._info[prompt] = self._info[prompt].merged(info) if prompt in self._info else info
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
                from ftcot_hf.tasks.builder import load_task  # heavy: imports datasets

                rows = load_task(task, data_dir=data_dir, cache_dir=cache_dir)
            matched, _ = match_kojima_log(log, rows)
            records += matched
            sources.append(f"{kojima_log_source(task).url}@sha256:{log.sha256}")
            logger.info("replay: %s: %d Kojima recordings (log: %d questions).", task, len(matched), len(log.entries))
        return cls.from_kojima_records(records, sources=sources)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, *, model: str | None = None) -> ReplayTeacher:
        """Read our JSONL recording format (see :mod:`~ftcot_hf.teachers.replay.recordings`).

        Raises:
            SourceFormatError: a malformed line, a missing or mistyped field, or two different recordings of the
                same prompt and sample (names the file and line).
        """
        path = Path(path)
        teacher = cls(model=model or f"recording {path.name}", sources=[f"{path}@sha256:{sha256_of(path)}"])
        count = 0
        for rec in read_ftcot_jsonl(path):
            count += 1
            if not teacher.add(rec.prompt, rec.generation, sample=rec.sample, info=rec.info):
                raise SourceFormatError(
                    f"{rec.where}: a different recording of sample {rec.sample} of this prompt was already read "
                    f"(prompt {rec.prompt[:60]!r})."
                )
        logger.info("replay: read %d prompts from %s (%d recordings).", len(teacher), path, count)
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
        """Read a completion-data JSON of the reference implementation (itsnamgyu/reasoning-teacher), keyed by our
        stage-1 and stage-2 (with ``trigger``) prompts: see
        :func:`~ftcot_hf.teachers.replay.recordings.read_completion_data`. Unrecorded stage-1 finish reasons are
        guessed as for the Kojima logs (128 tokens).

        Raises:
            SourceFormatError: malformed JSON, a missing field, an unknown sample_index, or a question that is not
                ours (names the file and the sample).
        """
        path = Path(path)
        meta, recordings = read_completion_data(
            path,
            task,
            data_dir=data_dir,
            cache_dir=cache_dir,
            dataset=dataset,
            trigger=trigger,
            cot_max_tokens=KOJIMA_COT_MAX_TOKENS,
        )
        name = model or f"{meta.get('base_model', 'unknown model')} (reasoning-teacher completion data)"
        teacher = cls(model=name, sources=[f"{path}@sha256:{sha256_of(path)}"])
        for rec in recordings:
            teacher.add(rec.prompt, rec.generation, sample=rec.sample, info=rec.info)
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

    @classmethod
    def from_config(
        cls,
        *,
        model: str | None = None,
        base_url: str | Sequence[str] | None = None,
        tasks: Iterable[Any] = (),
        data_dir: str | os.PathLike | None = None,
        replay_file: str | os.PathLike | None = None,
        source: str = "kojima",
    ) -> ReplayTeacher:
        """The replay teacher of a teach config (the contract of every backend's ``from_config``).

        Args:
            model / base_url: not used (a recording is its own model); accepted because every caller passes them.
            tasks: the tasks taught: :class:`~ftcot_hf.Task` objects (their ``.name``) or task names.
            data_dir: offline mirror of the sources (Kojima logs, task data).
            replay_file: a ``.jsonl`` recording in our format (:meth:`from_jsonl`) or a reasoning-teacher
                completion-data JSON of exactly one task (:meth:`from_completion_data`). Takes precedence over
                ``source``.
            source: without ``replay_file``: ``"kojima"``, Kojima et al.'s logs of ``tasks`` (all 12 when
                ``tasks`` is empty; :meth:`from_kojima_logs`).

        Raises:
            ValueError: ``replay_file`` does not exist, a completion-data JSON with not exactly one task, or an
                unknown ``source``.
        """
        names = [getattr(t, "name", t) for t in tasks or ()]
        if replay_file:
            path = Path(replay_file).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"Replay file {os.fspath(replay_file)} not found: pass an existing .jsonl recording (ftcot "
                    "format) or reasoning-teacher completion-data JSON."
                )
            if path.name.endswith(".jsonl"):
                return cls.from_jsonl(path)
            if len(names) != 1:
                raise ValueError(
                    f"A completion-data JSON holds one task: pass exactly one task with {path} "
                    f"(got {len(names)}: {', '.join(map(str, names)) or 'none'})."
                )
            return cls.from_completion_data(path, names[0], data_dir=data_dir)
        if source != "kojima":
            raise ValueError(
                f"Unknown replay source {source!r}: use 'kojima' (Kojima et al.'s logs), or pass replay_file (a "
                ".jsonl recording or a reasoning-teacher completion-data JSON)."
            )
        return cls.from_kojima_logs(names, data_dir=data_dir)

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


__all__ = ["REPLAY_FORMAT_VERSION", "ReplayTeacher"]
