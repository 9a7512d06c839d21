"""The stage machinery (fingerprints, atomic stage folders, disk errors) and the teach/train/eval stages."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from datasets import load_dataset

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.cli import EvalConfig, run_eval
from ftcot_hf.pipeline.config import EVAL, RunConfig
from ftcot_hf.pipeline.plan import RunPlan
from ftcot_hf.teach.cli import TeachConfig
from ftcot_hf.training.callbacks import ValidationEvalCallback
from ftcot_hf.training.cli import peft_config_from
from ftcot_hf.training.config import FineTuneCoTConfig, bf16_supported, cpu_bf16_native
from ftcot_hf.training.trainer import train_student
from ftcot_hf.utils.fs import atomic_dir

logger = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# Bumped when a stage's behaviour changes, so stale outputs of an older ftcot are not reused.
_STAGE_VERSION = 3


# --- stage machinery -----------------------------------------------------------------------------------------------
def fingerprint(*parts: Any) -> str:
    payload = json.dumps([_STAGE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_stage(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stage_done(folder: Path, fp: str) -> bool:
    info = read_stage(folder)
    return info is not None and info.get("fingerprint") == fp


def is_disk_error(exc: BaseException) -> bool:
    """Out of space / over a file-size or quota limit, also when a native writer (safetensors, Arrow) reports it
    in its own exception type with the OS error in the message."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return True
    text = str(exc)
    return any(f"os error {n})" in text or os.strerror(n) in text for n in _DISK_ERRNOS)


def disk_error(exc: BaseException, what: str, where: Path) -> FtcotError:
    code = (
        exc.errno
        if isinstance(exc, OSError)
        else next(
            (n for n in _DISK_ERRNOS if f"os error {n})" in str(exc) or os.strerror(n) in str(exc)), errno.ENOSPC
        )
    )
    reason = "the disk is full" if code == errno.ENOSPC else f"a write failed ({os.strerror(code)})"
    return FtcotError(
        f"Stage {what!r}: {reason} while saving to {where}. Nothing of this stage was kept; earlier stages' "
        f"outputs are intact. Free some space (or choose another --output_dir) and re-run the same command: it "
        "resumes at this stage."
    )


@contextmanager
def building(folder: Path, name: str, fp: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
    """Build a stage's output in a hidden sibling folder (``atomic_dir``); on success, write stage.json and swap it
    into place, replacing an output of other inputs only now that the new one is complete."""

    start = time.perf_counter()
    try:
        with atomic_dir(folder) as tmp:
            yield tmp
            info = {"stage": name, "fingerprint": fp, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "seconds": round(time.perf_counter() - start, 1), **(meta or {})}  # fmt: skip
            (tmp / STAGE_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    except BaseException as e:
        if is_disk_error(e):
            raise disk_error(e, name, folder) from None
        raise


def check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise FtcotError(
            f"Cannot write to the run folder {path} ({e.strerror or e}). Choose a writable --output_dir."
        ) from None


# --- the stages ----------------------------------------------------------------------------------------------------
def teach_inputs(teach: TeachConfig, tasks: list[Any]) -> dict[str, Any]:
    """What the teach stage's output depends on: every field of its TeachConfig (minus ``NOT_FINGERPRINTED``), so
    a new field can never silently reuse a stale stage, and the data of user-dataset tasks (their files' sha256)."""

    kept = [f.name for f in fields(TeachConfig) if f.name not in TeachConfig.NOT_FINGERPRINTED]
    inputs = {name: getattr(teach, name) for name in kept}
    inputs["tasks"] = [t.name for t in tasks]
    inputs["data"] = {t.name: t.provenance() for t in tasks if not t.builtin}
    return inputs


def train_inputs(config: RunConfig) -> dict[str, Any]:
    """What a train stage's output depends on: the train section (every FineTuneCoTConfig/StudentArgs field but the
    speed and logging ones), the recipe's text, and what the run decides (student, format, seed)."""
    inputs = {"student": config.student, "format": config.format, "seed": config.seed, "recipe": config.recipe_text,
              "train": config.fingerprint_inputs("train")}  # fmt: skip
    if config.scores_every_epoch:  # the per-epoch scores are part of what the train stage produces
        inputs["every_epoch"] = eval_inputs(config)
    if config.validation_size or config.select_epoch not in (None, "last"):  # held-out questions are not trained on
        inputs["selection"] = {"validation_size": config.validation_size, "select_epoch": config.select_epoch}
    return inputs


def recipe_summary(config: RunConfig) -> dict[str, Any]:
    """The training recipe a pushed student's card shows: the train section's values that are not the defaults of
    ``FineTuneCoTConfig`` (no local paths), plus student and format."""
    values = config.train_values()
    defaults = {f.name: f.default for f in fields(FineTuneCoTConfig) if f.name in values}
    changed = {k: v for k, v in config.fingerprint_inputs("train").items() if k in values and v != defaults.get(k)}
    return {"student": config.student, "format": config.format, "seed": config.seed, **changed}


def eval_inputs(config: RunConfig) -> dict[str, Any]:
    """What an eval stage's output depends on: the eval section (not the batch size), the format, the parsing."""
    section = config.fingerprint_inputs("eval", EVAL)  # not the run-only eval options: they choose which evals run
    return {"format": config.format, "mode": config.mode, **section}


def test_split(rationales: Path, task: str, limit: int | None) -> Any:

    test = load_dataset(str(rationales), task, split="test")
    keep = [c for c in ("sample_index", "question", "answer", "choices") if c in test.column_names]
    test = test.select_columns(keep)
    return test.select(range(min(limit, test.num_rows))) if limit else test


def _train_split(rationales: Path, task: str) -> Any:

    return load_dataset(str(rationales), task, split="train")


VALIDATION_SPLIT = "validation_split.json"


def hold_out(config: RunConfig, train: Any, task: str) -> tuple[Any, Any, dict[str, Any] | None]:
    """(train rows, validation records, the split) with ``config.validation_size`` of the train questions held out:
    by question (``sample_index``), so the D rationales of one question are all on one side, drawn with
    ``random.Random(config.seed)``. The validation records are one per held-out question, with its gold answer."""

    if not config.validation_size:
        return train, None, None
    questions = sorted(set(train["sample_index"]))
    count = config.validation_count(len(questions), f"with kept rationales for {task}")
    held = sorted(random.Random(config.seed).sample(questions, count))
    held_set = set(held)
    index = train["sample_index"]
    keep = [i for i, q in enumerate(index) if q not in held_set]
    first: dict[Any, int] = {}
    for i, q in enumerate(index):
        if q in held_set:
            first.setdefault(q, i)
    columns = [c for c in ("sample_index", "question", "answer", "choices") if c in train.column_names]
    validation = train.select([first[q] for q in held]).select_columns(columns)
    split = {"task": task, "validation_size": config.validation_size, "seed": config.seed,
             "questions": len(questions), "validation_questions": count, "train_questions": len(questions) - count,
             "train_rows": len(keep), "held_out_sample_indices": held}  # fmt: skip
    return train.select(keep), validation, split


def evaluate_stage(config: EvalConfig, model: Any, tokenizer: Any, into: Path, stage: str) -> Any:
    """One evaluation stage: ``run_eval`` (what ``ftcot eval`` runs) with the stage's EvalConfig and the loaded
    student, its files written ``into`` the stage's temporary folder; returns the task's result."""
    results, _ = run_eval(config, model=model, tokenizer=tokenizer, progress=f"{stage} {config.tasks[0].name}",
                          output_dir=into)  # fmt: skip
    return results[0]


def resolve_bf16(config: RunConfig) -> bool:
    if config.bf16 != "auto":
        return config.bf16 == "true"

    # Unlike FineTuneCoTConfig (fp32 on CPU, as the paper), a run also takes bf16 where the CPU has it natively.
    return bf16_supported() or (not torch.cuda.is_available() and cpu_bf16_native())


def precision_note(config: RunConfig) -> str:
    """One line saying which precision and how many threads training uses, and why (printed once per run)."""
    bf16 = resolve_bf16(config)
    if torch.cuda.is_available():
        where = f"CUDA ({torch.cuda.get_device_name(0)})"
        why = "the GPU has bf16" if bf16 else ("--bf16 false" if config.bf16 == "false" else "the GPU has no bf16")
    else:
        threads = config.cpu_threads or torch.get_num_threads()
        where = f"CPU, {threads} thread(s)" + ("" if config.cpu_threads else " (torch's default: --cpu_threads N)")
        if config.bf16 != "auto":
            why = f"--bf16 {config.bf16}"
        elif bf16:
            why = "this CPU computes bf16 natively (AVX512-BF16/AMX): autocast is faster than fp32"
        else:
            why = "this CPU has no native bf16 (no AVX512-BF16/AMX), where bf16 autocast is slower than fp32"
    return f"training in {'bf16 autocast' if bf16 else 'fp32'} on {where}: {why}."


def _peft_config(config: RunConfig) -> Any:
    return peft_config_from(config.adapter_args())


def train_stage(plan: RunPlan, task: Any, final: Path, fp: str) -> None:
    """Train into ``.<task>.partial`` (checkpoints each epoch), then move the model into ``final``."""
    started = time.perf_counter()
    config, rationales, train_config = plan.config, plan.rationales, plan.train[task.name]
    partial = _claim_partial(Path(train_config.output_dir), fp)
    train = _train_split(rationales, task.name)
    if train.num_rows == 0:
        raise FtcotError(
            f"No training rationales for {task.name}: the teacher got no question right (see "
            f"{rationales}/yield_report.json). Use keep='all', more samples (--degree), or another teacher."
        )
    train, validation, split = hold_out(config, train, task.name)
    callbacks = []
    if split is not None:
        (partial / VALIDATION_SPLIT).write_text(json.dumps(split, indent=2), encoding="utf-8")
        # Scored after every epoch, the last included (the eval stage scores the test split only).
        callbacks.append(ValidationEvalCallback(validation, task=task, format=None,
                                                batch_size=config.eval_batch_size,
                                                max_new_tokens=config.eval_max_new_tokens, mode=config.mode,
                                                output_dir=partial, last_epoch=True))  # fmt: skip
    try:
        test = test_split(rationales, task.name, config.limit_test) if config.scores_every_epoch else None
        _, result = train_student(train_config, config.student, train, test, peft_config=_peft_config(config),
                                        resume_from_checkpoint="last", task=task, callbacks=callbacks)  # fmt: skip
    except Exception as e:
        if is_disk_error(e):
            raise disk_error(e, "train", partial) from None
        raise
    summary = result.to_dict()
    meta = {"training_loss": summary.get("training_loss"), "seconds": round(time.perf_counter() - started, 1)}
    # train_summary.json, loss_log.json and the model card come from train_student, written in `partial`
    _promote(partial, final, "train", fp, meta)


PARTIAL_MARKER = "ftcot_partial.json"


def _claim_partial(partial: Path, fp: str) -> Path:
    """The folder a stage trains in (checkpoints each epoch): kept when its marker names ``fp`` (a resumed stage),
    emptied when it names other inputs (their checkpoints are no use)."""
    marker = partial / PARTIAL_MARKER
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") != fp:
        logger.info("Discarding checkpoints of a run with other inputs in %s", partial)
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fp}), encoding="utf-8")
    return partial


def _promote(partial: Path, final: Path, stage: str, fp: str, meta: dict[str, Any]) -> None:
    """The finished model of ``partial`` (not its checkpoints) becomes the stage's folder ``final``, atomically."""
    with building(final, stage, fp, meta) as tmp:
        for item in partial.iterdir():
            if item.name.startswith("checkpoint-") or item.name == PARTIAL_MARKER:
                continue
            shutil.copytree(item, tmp / item.name) if item.is_dir() else shutil.copy2(item, tmp / item.name)
    shutil.rmtree(partial, ignore_errors=True)


def model_identity(name: str | None) -> Any:
    """What tells one version of a local model folder from another, cheaply: its ``stage.json`` fingerprint (a run's
    student) and each weights/config file's size and modification time. A teacher retrained in place (a study's
    teacher run with new settings) must not leave a distillation from the old one reused. A Hub id is its name."""
    path = Path(str(name)).expanduser() if name else None
    if path is None or not path.is_dir():
        return name
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    return {"stage": (read_stage(path) or {}).get("fingerprint"),
            "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}  # fmt: skip


def distill_inputs(config: RunConfig) -> dict[str, Any]:
    """What a distill stage's output depends on (beside the trained student's fingerprint): the distill section
    (teacher included), the teacher folder's version, the format and seed, and the per-epoch scores it records."""
    inputs = {"distill": config.fingerprint_inputs("distill"), "teacher": model_identity(config.distill_teacher),
              "format": config.format, "seed": config.seed}  # fmt: skip
    if config.scores_every_epoch:
        inputs["every_epoch"] = eval_inputs(config)
    return inputs


def distill_stage(plan: RunPlan, task: Any, final: Path, fp: str, say: Any = None) -> None:
    """Distil ``config.distill_teacher`` into the trained student (``ftcot distill``) in ``.<task>.partial``
    (checkpoints each epoch, resumed), then move the distilled student into ``final``. Its prompts are the questions
    the student was trained on (the validation hold-out stays held out); ``say`` gets the line on the vocabularies."""
    from ftcot_hf.training.distill import distill_student

    started = time.perf_counter()
    config, rationales, distill = plan.config, plan.rationales, plan.distill[task.name]
    partial = _claim_partial(Path(distill.output_dir), fp)
    train, _, _ = hold_out(config, _train_split(rationales, task.name), task.name)
    test = test_split(rationales, task.name, config.limit_test) if config.scores_every_epoch else None
    try:
        _, result = distill_student(distill, train, test, task=task, log=say)
    except Exception as e:
        if is_disk_error(e):
            raise disk_error(e, "distill", partial) from None
        raise
    # The whole stage's time, as the train stage records: a reused stage reports it (a study sizes arms by it).
    meta = {"training_loss": result.training_loss, "trainer": result.trainer, "vocabulary": result.vocabulary,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    _promote(partial, final, "distill", fp, meta)
