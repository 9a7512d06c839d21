"""The run itself: validation, the stages in order, the push, and the ``ftcot run`` CLI."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.report import versions
from ftcot_hf.hub.cli import push
from ftcot_hf.hub.publish import check_push_access
from ftcot_hf.pipeline.config import PARSER_CLASSES, RunConfig, RunResult
from ftcot_hf.pipeline.plan import (
    RunPlan,
    eval_configs,
    partial_folder,
    push_configs,
    rationales_folder,
    writing_into,
)
from ftcot_hf.pipeline.report import write_report
from ftcot_hf.pipeline.stages import (
    VALIDATION_SPLIT,
    building,
    check_writable,
    disk_error,
    distill_inputs,
    distill_stage,
    eval_inputs,
    evaluate_stage,
    fingerprint,
    is_disk_error,
    precision_note,
    read_stage,
    recipe_summary,
    resolve_bf16,
    stage_done,
    teach_inputs,
    test_split,
    train_inputs,
    train_stage,
)
from ftcot_hf.students.formats import get_format
from ftcot_hf.students.loading import check_student, load_student
from ftcot_hf.tasks.args import resolve_tasks
from ftcot_hf.tasks.builder import load_task
from ftcot_hf.teach.cli import EXIT_INCOMPLETE, TeachIncompleteError, teach
from ftcot_hf.teach.folder import save_rationales
from ftcot_hf.teachers import check_recorded_tasks, teacher_spec
from ftcot_hf.teachers.batch.core import BatchesPending
from ftcot_hf.training.callbacks import EPOCH_METRICS, epoch_metrics_file, summarize_epochs
from ftcot_hf.training.distill import check_model
from ftcot_hf.training.distill_config import normalize_url
from ftcot_hf.training.distill_server import reach_server
from ftcot_hf.utils.console import quiet_libraries
from ftcot_hf.utils.fs import check_folder
from ftcot_hf.utils.parser import parser_for
from ftcot_hf.utils.scrub import redact

logger = logging.getLogger(__name__)


# --- validation (before any work: a typo must not cost a teaching run) ---------------------------------------------
def validate(config: RunConfig) -> RunPlan:
    """Check every name and file of ``config`` before any work; returns the run's :class:`RunPlan`: its
    :class:`~ftcot_hf.Task` objects (the edge: below it, stages receive these objects), ``config`` with the epoch
    selection filled in for them (a copy: ``config`` itself is left as given), and each stage's own config, built
    (and so checked) here once."""

    check_folder(config.output_dir, what="the run folder")  # a file: fails now, not after the teach stage
    teach = config.teach_config(rationales_folder(config))  # TeachConfig checks its values now
    tasks = resolve_tasks(config.tasks, config)
    config = config.with_selection(builtin=all(t.builtin for t in tasks))
    fmt = get_format(config.format)
    missing = [c for c in fmt.required_columns if c in ("fundamentals", "common_errors")]
    if missing and not config.annotations:
        raise FtcotError(f"Format {fmt.name!r} trains on the teacher's {', '.join(missing)}: add --annotations true.")
    check_recorded_tasks(config, tasks)
    teacher_spec(config.teacher).cls.check_flags(model=config.teacher_model, base_url=config.base_url)
    if config.replay_file and not Path(config.replay_file).is_file():
        raise FtcotError(f"--replay_file {config.replay_file} not found.")
    if config.push_to_hub:  # a missing token or a bad repo id must not wait for the end of the run
        ids = [config.hub_dataset_id] if config.hub_dataset_id else []
        ids += [config.hub_model_id.replace("{task}", t.name) for t in tasks] if config.hub_model_id else []
        check_push_access(ids)

    check_student(config.student)  # a Hub id that cannot be had fails now, not after the teach stage
    run_dir, bf16 = Path(config.output_dir), resolve_bf16(config)
    distill = {}
    if config.distill:  # the teacher and the distill section's values are checked now, not after training
        if config.distill_teacher:
            check_model(config.distill_teacher, "--distill_teacher")
        if config.distill_teacher_url:  # down or not vLLM: said before the teach stage
            reach_server(normalize_url(config.distill_teacher_url), flag="--distill_teacher_url")
        distill = {t.name: config.distill_config(t.name, run_dir / "student" / t.name,
                                                 partial_folder(run_dir / "distilled" / t.name), bf16=bf16)
                   for t in tasks}  # fmt: skip
    if config.recipe and not Path(config.recipe).is_file():
        raise FtcotError(f"Recipe {config.recipe} not found (give a YAML of FineTuneCoTConfig keys, e.g. recipes/).")
    train = {t.name: config.train_config(t.name, partial_folder(run_dir / "student" / t.name), bf16=bf16)
             for t in tasks}  # FineTuneCoTConfig checks its values now  # fmt: skip
    if config.validation_size and config.validation_size >= 1 and config.limit_train is None:  # vs the train split
        for task in tasks:
            config.validation_count(_train_questions(config, task), f"of {task.name}'s train split")
    rationales = Path(teach.output_dir)
    return RunPlan(config=config, tasks=tasks, teach=teach, bf16=bf16, train=train, distill=distill,
                   evals=eval_configs(config, tasks, rationales), pushes=push_configs(config, tasks, rationales))


def _train_questions(config: RunConfig, task: Any) -> int:
    """How many train questions the task has (the teach stage teaches them all without --limit_train)."""

    splits = load_task(task, data_dir=config.data_dir)
    return splits["train"].num_rows if "train" in splits else 0


# --- the run -------------------------------------------------------------------------------------------------------
def _write_run_files(config: RunConfig, run_dir: Path) -> None:

    text = yaml.safe_dump(redact(config.to_yaml_dict()), sort_keys=False)  # re-run it with the secrets given again
    (run_dir / "run_config.yaml").write_text(text, encoding="utf-8")
    (run_dir / "versions.json").write_text(json.dumps(versions(), indent=2), encoding="utf-8")


def _run_task(
    plan: RunPlan,
    task: Any,
    teach_fp: str,
    timed: Callable[[str, Path, str, Callable[[], None]], None],
    metrics: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    config, name = plan.config, task.name
    evals = {stage: configs[name] for stage, configs in plan.evals.items()}
    # the student before training
    if "eval_untrained" in evals:
        untrained = plan.folder("eval_untrained", name)
        test = test_split(plan.rationales, name, evals["eval_untrained"].limit)
        fp = fingerprint("eval_untrained", name, config.student, eval_inputs(config), test.num_rows)
        timed(f"eval_untrained/{name}", untrained, fp,
              lambda: _evaluate(evals["eval_untrained"], config.student, untrained, fp, "eval untrained"))  # fmt: skip
        metrics["untrained_accuracy"] = _accuracy(untrained)
        metrics["untrained_n"] = test.num_rows
    # format + train
    student_dir = plan.folder("student", name)
    train_fp = fingerprint("train", name, teach_fp, train_inputs(config))

    def do_train() -> None:
        say(f"[train/{name}] {precision_note(config)}")
        train_stage(plan, task, student_dir, train_fp)

    timed(f"train/{name}", student_dir, train_fp, do_train)
    summary = json.loads((student_dir / "train_summary.json").read_text(encoding="utf-8"))
    metrics["training_loss"] = summary.get("training_loss")
    distilled = _distill_task(plan, task, train_fp, timed, metrics, say) if config.distill else None
    # the trained student
    trained = plan.folder("eval", name)
    eval_fp = fingerprint("eval", name, train_fp, eval_inputs(config))
    timed(f"eval/{name}", trained, eval_fp,
          lambda: _evaluate(evals["eval"], str(student_dir), trained, eval_fp, "eval trained"))  # fmt: skip
    result = json.loads((trained / "results.json").read_text(encoding="utf-8"))["results"][0]
    metrics.update(accuracy=result["accuracy"], maj_at_k=result.get("maj_at_k"), n=result["n"])
    if config.scores_every_epoch:
        metrics.update(_epoch_scores(student_dir, summary, result["accuracy"], config.select_epoch == "test"))
    if config.validation_size:
        metrics.update(_validation_scores(student_dir, metrics.get("epoch_accuracy") or {}))
    if distilled is not None:
        _eval_distilled(plan, task, distilled, evals["eval_distilled"], timed, metrics)


def _evaluate(eval_config: Any, student: str, folder: Path, fp: str, bar: str) -> None:
    """An evaluation stage: ``student`` loaded and scored by ``run_eval`` into ``folder`` (built aside, then moved
    into place; the stage is named after the folder's parent: eval_untrained, eval, eval_distilled); ``bar``: its
    progress bar's label."""
    model, tokenizer = load_student(student)
    with building(folder, folder.parent.name, fp) as tmp:
        evaluate_stage(eval_config, model, tokenizer, tmp, bar)


def _distill_task(plan: RunPlan, task: Any, train_fp: str, timed: Callable[[str, Path, str, Callable[[], None]], None],
                  metrics: dict[str, Any], say: Callable[[str], None]) -> tuple[Path, str]:  # fmt: skip
    """The distill stage (between train and eval): the trained student distilled from ``--distill_teacher`` into
    ``distilled/<task>``. Returns its folder and fingerprint."""
    config, name = plan.config, task.name
    folder = plan.folder("distilled", name)
    fp = fingerprint("distill", name, train_fp, distill_inputs(config))

    def do_distill() -> None:
        say(f"[distill/{name}] {precision_note(config)}")
        distill_stage(plan, task, folder, fp, say=lambda line: say(f"[distill/{name}] {line}"))

    timed(f"distill/{name}", folder, fp, do_distill)
    info = read_stage(folder) or {}
    metrics.update(distill_teacher=config.distill_teacher_name, distill_trainer=info.get("trainer"),
                   distill_vocabulary=info.get("vocabulary"), distill_training_loss=info.get("training_loss"))
    return folder, fp


def _eval_distilled(plan: RunPlan, task: Any, distilled: tuple[Path, str], eval_config: Any,
                    timed: Callable[[str, Path, str, Callable[[], None]], None], metrics: dict[str, Any]) -> None:
    """The distilled student on the test split, as the eval stage scores the SFT student (same questions and
    settings), so the report puts the two side by side."""
    name, (folder, distill_fp) = task.name, distilled
    out = plan.folder("eval_distilled", name)
    fp = fingerprint("eval_distilled", name, distill_fp, eval_inputs(plan.config))
    timed(f"eval_distilled/{name}", out, fp, lambda: _evaluate(eval_config, str(folder), out, fp, "eval distilled"))
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"][0]
    metrics.update(distilled_accuracy=result["accuracy"], distilled_n=result["n"])
    if plan.config.scores_every_epoch:
        summary = json.loads((folder / "train_summary.json").read_text(encoding="utf-8"))
        scores = _epoch_scores(folder, summary, result["accuracy"], best_on_test=False)
        metrics["distilled_epoch_accuracy"] = scores["epoch_accuracy"]


def _epoch_scores(
    student_dir: Path, summary: dict[str, Any], final: float | None, best_on_test: bool
) -> dict[str, Any]:
    """Accuracy per epoch (the callback's epochs + the eval stage's final model) and, when asked
    (``--select_epoch test``), the best epoch, which is selected on the test set: optimistic, reported apart from the
    last epoch."""

    path = student_dir / EPOCH_METRICS
    records = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    per_epoch = {int(r["epoch"]): r["accuracy"] for r in records}
    last = round(float(summary.get("metrics", {}).get("epoch") or max(per_epoch, default=0) + 1))
    per_epoch[last] = final
    scores: dict[str, Any] = {"epoch_accuracy": dict(sorted(per_epoch.items()))}
    if best_on_test:
        _, best = summarize_epochs([{"epoch": e, "accuracy": a} for e, a in per_epoch.items()], report_best_epoch=True)
        scores.update(best_epoch=best and best["epoch"], best_epoch_accuracy=best and best["accuracy"])
    return scores


def _validation_scores(student_dir: Path, test_per_epoch: dict[int, Any]) -> dict[str, Any]:
    """The held-out questions' accuracy per epoch, the epoch they select (ties: the earlier) and its test accuracy."""

    split = json.loads((student_dir / VALIDATION_SPLIT).read_text(encoding="utf-8"))
    path = student_dir / epoch_metrics_file("validation")
    records = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    per_epoch = {int(r["epoch"]): r["accuracy"] for r in records}
    _, best = summarize_epochs([{"epoch": e, "accuracy": a} for e, a in per_epoch.items()], report_best_epoch=True)
    epoch = best and best["epoch"]
    return {"validation_split": split, "validation_accuracy": dict(sorted(per_epoch.items())),
            "validation_epoch": epoch, "validation_epoch_accuracy": best and best["accuracy"],
            "validation_epoch_test_accuracy": test_per_epoch.get(epoch)}  # fmt: skip


def run(config: RunConfig, *, log: Callable[[str], None] | None = None) -> RunResult:
    """Run every stage of ``config`` (reusing finished ones); returns where the report is and the metrics."""
    say = log or logger.info
    plan = validate(config)
    config, tasks, run_dir = plan.config, plan.tasks, plan.run_dir
    check_writable(run_dir)
    try:
        _write_run_files(config, run_dir)
    except OSError as e:
        if is_disk_error(e):
            raise disk_error(e, "setup", run_dir) from None
        raise
    stages: dict[str, dict[str, Any]] = {}
    per_task: dict[str, dict[str, Any]] = {t.name: {} for t in tasks}

    def timed(name: str, folder: Path, fp: str, work: Callable[[], None]) -> None:
        if stage_done(folder, fp):
            took = read_stage(folder).get("seconds")  # what it took when it ran (a reuse costs nothing)
            say(f"[{name}] reusing {folder}" + ("" if took is None else f" (it ran in {took:.0f} s)"))
            stages[name] = {"status": "reused", "seconds": 0.0, "original_seconds": took, "output": str(folder)}
            return
        say(f"[{name}] running -> {folder}")
        t = time.perf_counter()
        work()
        stages[name] = {"status": "ran", "seconds": time.perf_counter() - t, "output": str(folder)}

    with quiet_libraries():  # one bar per stage: the libraries' own bars and INFO logs are off inside
        # 1. teach + filter
        rationales = plan.rationales
        teach_fp = fingerprint("teach", teach_inputs(plan.teach, tasks))

        def do_teach() -> None:

            with building(rationales, "teach", teach_fp) as tmp:
                teach_config = writing_into(plan.teach, tmp)
                results, reports = teach(teach_config, tasks=tasks, progress=True)
                save_rationales(teach_config, results, reports, tasks)

        timed("teach", rationales, teach_fp, do_teach)
        if config.num_shards > 1:
            say(shard_done_message(config, rationales))
            return RunResult(output_dir=run_dir, report=rationales, stages=stages)
        yields = json.loads((rationales / "yield_report.json").read_text(encoding="utf-8"))
        for report in yields.get("reports", yields if isinstance(yields, list) else []):
            if report.get("task") in per_task:
                per_task[report["task"]].update(kept=report.get("kept"), questions=report.get("questions"),
                                                decontamination=report.get("decontamination"))  # fmt: skip

        for task in tasks:
            _run_task(plan, task, teach_fp, timed, per_task[task.name], say)

        # 5. report (always rebuilt: cheap, and it reflects every stage)
        report = write_report(config, run_dir, per_task, stages)
        (run_dir / "stages.json").write_text(json.dumps(stages, indent=2), encoding="utf-8")
        # 6. push
        if plan.pushes:
            _push(plan, per_task, say)
    return RunResult(output_dir=run_dir, report=report, metrics=per_task, stages=stages)


def shard_done_message(config: RunConfig, rationales: Path) -> str:
    """What to do once every part of a ``--num_shards`` run has taught its questions."""
    parts, merged = rationales.with_name("rationales.shard-*"), rationales.with_name("rationales.merged")
    return (f"[teach] part {config.shard_index} of {config.num_shards} taught into {rationales}; training waits for "
            f"every part. When all are done: `ftcot merge {parts} --output_dir {merged} "
            "--cache` (the parts' rows and request caches), then the same `ftcot run` without --num_shards and "
            "--shard_index: its teach stage is answered from the merged cache, then it trains and evaluates.")


def _accuracy(folder: Path) -> float | None:
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))["results"][0]["accuracy"]


CARD_RESULTS = ("accuracy", "maj_at_k", "untrained_accuracy", "n", "untrained_n")
"""The metrics of a task a pushed student's card shows."""


def _push(plan: RunPlan, per_task: dict[str, dict[str, Any]], say: Callable[[str], None]) -> None:
    """Each upload of the plan through ``push`` (what ``ftcot push`` runs), the students' cards with the run's
    recipe and each task's results."""
    recipe = recipe_summary(plan.config)
    for name, push_config in plan.pushes.items():
        if push_config.what == "rationales":
            say(push(push_config).summary())
            continue
        results = {k: v for k, v in per_task[name].items() if k in CARD_RESULTS}
        say(push(push_config, recipe=recipe, results=results).summary())


RUN_LEAD = ("tasks", "dataset", "student", "teacher", "teacher_model", "base_url", "output_dir")
"""What `ftcot run` acts on: the first group of its --help."""


def parse_run_args(argv: list[str]) -> RunConfig:
    """`ftcot run`'s flags and ``--config run.yaml`` (flat flag names or the teach:/train:/eval:/hub: sections)."""

    parser = parser_for(PARSER_CLASSES, argv, prog="ftcot run", description=__doc__ and RUN_HELP, lead=RUN_LEAD)
    values: dict[str, Any] = {}
    for part in parser.parse(argv):
        values.update(asdict(part))
    return RunConfig(**values)


RUN_HELP = """teach -> filter -> format -> train -> evaluate -> report (-> push), resumable by stage.

Every option of `ftcot teach`, `ftcot train`, `ftcot eval` and `ftcot push` that a run passes on is here, grouped by
stage; in a --config YAML each group is a section (teach:, train:, eval:, hub:) with that command's own names."""


def cli_main(argv: list[str]) -> int:
    """`ftcot run`: flags or `--config run.yaml`."""
    config = parse_run_args(argv)
    start = time.perf_counter()
    try:
        result = run(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except BatchesPending as e:  # --no_wait: the teach stage's batches are submitted; the same command collects
        print(f"ftcot: {e} The run stops before training (the teach stage is not marked done).")
        return 0
    except TeachIncompleteError as e:  # a spent budget or failed requests: not a student of part of the data
        for report in e.reports:
            print(report.ledger_summary())
        kind = "error" if e.failed else "stopped"
        print(f"ftcot: {kind}: {e} The run stops before training (the teach stage is not marked done, so the same "
              "command picks it up: every reply so far is in the request cache).", file=sys.stderr)  # fmt: skip
        return EXIT_INCOMPLETE
    if config.num_shards > 1:  # the run stopped after its part's teach stage (it said what comes next)
        return 0
    for task, m in result.metrics.items():
        untrained = m.get("untrained_accuracy")
        before = "" if untrained is None else f"untrained {100 * untrained:.2f}% (first {m['untrained_n']}) -> "
        if untrained is not None and m["untrained_n"] == m.get("n"):
            before = f"untrained {100 * untrained:.2f}% -> "
        print(f"{task}: {before}trained {100 * (m.get('accuracy') or 0):.2f}% on {m.get('n')} test questions")
        if m.get("distilled_accuracy") is not None:
            print(f"{task}: SFT student {100 * (m.get('accuracy') or 0):.2f}% -> distilled from "
                  f"{config.distill_teacher_name} {100 * m['distilled_accuracy']:.2f}% ({m.get('distill_trainer')})")
        if m.get("validation_epoch") is not None:
            test = m.get("validation_epoch_test_accuracy")
            print(f"{task}: epoch {m['validation_epoch']} selected on validation: test "
                  f"{'-' if test is None else f'{100 * test:.2f}%'}")  # fmt: skip
    print(f"Done in {time.perf_counter() - start:.0f} s. Report: {result.report}")
    print(f"Rationales: load_dataset({str(result.output_dir / 'rationales')!r}, {next(iter(result.metrics))!r})")
    return 0
