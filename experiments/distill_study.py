"""The on-policy distillation study (issue 34 part 1): SFT-only vs SFT + on-policy distillation of a small student, at
equal training wall time, on one task where the teacher is far from perfect.

* Teacher: ``--base`` (SmolLM2-135M-Instruct, the embedded student) fine-tuned by Fine-tune-CoT on ``--task``
  (last_letter_concatenation) from the recorded text-davinci-002 rationales: one ``ftcot run`` (seed 42).
* Student: ``--base`` with every other decoder layer (:func:`ftcot_hf.students.shrink.keep_layers`: 15 of SmolLM2's
  30), so it shares the teacher's vocabulary and ``ftcot distill`` runs TRL's ``DistillationTrainer``.
* Per seed, two arms, each one ``ftcot run`` of the student on the same rationales:
  ``sft+distill``: ``--sft_epochs`` of Fine-tune-CoT, then ``--distill_epochs`` of on-policy distillation from the
  teacher (``--distill on_policy``); ``sft``: Fine-tune-CoT alone for ``--sft_epochs`` plus as many epochs as the
  distillation took time (its wall seconds over one SFT epoch's, rounded, at least 1). Both arms' training seconds
  are recorded, so the table shows how equal the budgets came out.
* The figure: last-epoch test accuracy (greedy, paper-mode parsing) per arm and seed, mean ± sample sd over seeds;
  the ``sft+distill`` arm's SFT student before distillation is shown too.

Each run lands in ``<root>/<name>/...``; finished stages are reused, so an interrupted study resumes where it stopped.
After every cell ``experiments/results/<name>.json`` (settings, commands, figures, seconds) and ``<name>.md`` are
rewritten; a cell already there with the same recipe is kept without its run folder (weights are never written to
experiments/).
What it found on 2 CPU cores (2026-12-07/08, experiments/results/distill_cpu*.md, docs/distill.md): on
last_letter_concatenation (teacher 30.00) no student made by dropping layers learns the task; on coin_flip (teacher
97.33, ``--task coin_flip --teacher_epochs 2 --max_completion_length 144 --eval_max_new_tokens 144``) the 23-layer
student does (``--student_keep 3/4``), and there the distillation arm beats more SFT epochs in each of 3 seeds.
Per seed of that cell: ~4 min SFT, ~11 min distillation, ~14-17 min for the SFT-only arm (10-12 epochs), ~1 min
per evaluation. Its smallest form runs with tiny models in ``tests/test_distill.py``.

    python experiments/distill_study.py                                   # the study (hours on a CPU)
    python experiments/distill_study.py --name distill_cpu_coin_flip_3of4 --task coin_flip --student_keep 3/4 \
        --teacher_epochs 2 --max_completion_length 144 --eval_max_new_tokens 144   # the cell that learns
    python experiments/distill_study.py --seeds 42 1 2 3 --table_only     # the table from the results file
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ftcot_hf.evaluation.report import versions  # noqa: E402
from ftcot_hf.pipeline import RunConfig, run  # noqa: E402
from ftcot_hf.students.shrink import keep_layers  # noqa: E402
from ftcot_hf.utils.fmt import pct  # noqa: E402

ARMS = ("sft+distill", "sft")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="distill_cpu", help="results file name (experiments/results/<name>.*)")
    parser.add_argument("--task", default="last_letter_concatenation")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="the teacher's base; the student is it with "
                        "every other layer")  # fmt: skip
    parser.add_argument("--student_keep", default="1/2", help="k/n: the student keeps k of every n decoder layers "
                        "(1/2: every other one; 3/4: all but every fourth)")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument("--teacher_epochs", type=float, default=5.0)
    parser.add_argument("--sft_epochs", type=float, default=3.0)
    parser.add_argument("--distill_epochs", type=float, default=1.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="Fine-tune-CoT's (teacher and student)")
    parser.add_argument("--distill_learning_rate", type=float, default=1e-5)
    parser.add_argument("--distill_beta", type=float, default=1.0, help="1: reverse KL (TRL's default)")
    parser.add_argument("--max_completion_length", type=int, default=96, help="tokens the student samples")
    parser.add_argument("--eval_max_new_tokens", type=int, default=96)
    parser.add_argument("--eval_batch_size", type=int, default=50)
    parser.add_argument("--limit_train", type=int, default=None, help="quick runs: first N train questions")
    parser.add_argument("--limit_test", type=int, default=None, help="quick runs: first N test questions")
    parser.add_argument("--cpu_threads", type=int, default=None)
    parser.add_argument("--root", default="runs/distill_study")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--results_dir", default=str(REPO_ROOT / "experiments" / "results"))
    parser.add_argument("--table_only", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _config(args: argparse.Namespace, output_dir: Path, **values: Any) -> RunConfig:
    return RunConfig(
        tasks=[args.task], learning_rate=args.learning_rate, eval_untrained=False, data_dir=args.data_dir,
        limit_train=args.limit_train, limit_test=args.limit_test, eval_max_new_tokens=args.eval_max_new_tokens,
        eval_batch_size=args.eval_batch_size, cpu_threads=args.cpu_threads, output_dir=str(output_dir), **values,
    )  # fmt: skip


def _seconds(result: Any, stage: str) -> float:
    """What a stage took when it ran (a reused stage keeps its first time)."""
    info = result.stages[stage]
    return float(info["seconds"] if info["status"] == "ran" else info.get("original_seconds") or 0.0)


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """Everything a cell's figures depend on but the seed: a cell recorded with another recipe is run again."""
    keys = ("task", "base", "teacher_epochs", "sft_epochs", "distill_epochs", "learning_rate", "distill_learning_rate",
            "distill_beta", "max_completion_length", "eval_max_new_tokens", "limit_train", "limit_test",
            "student_keep")  # fmt: skip
    return {k: getattr(args, k) for k in keys}


def teacher_cell(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    result = run(_config(args, root / "teacher", student=args.base, num_train_epochs=args.teacher_epochs, seed=42))
    m = result.metrics[args.task]
    return {"folder": str(root / "teacher" / "student" / args.task), "accuracy": m["accuracy"], "n": m["n"],
            "train_seconds": _seconds(result, f"train/{args.task}")}  # fmt: skip


def seed_cell(args: argparse.Namespace, root: Path, student: Path, teacher: str, seed: int) -> dict[str, Any]:
    """Both arms of one seed: SFT + distillation first (its times size the SFT-only arm), then SFT alone."""
    task = args.task
    both = run(_config(args, root / f"sft+distill-seed{seed}", student=str(student), seed=seed,
                       num_train_epochs=args.sft_epochs, distill="on_policy", distill_teacher=teacher,
                       distill_num_train_epochs=args.distill_epochs, distill_learning_rate=args.distill_learning_rate,
                       distill_beta=args.distill_beta,
                       distill_max_completion_length=args.max_completion_length))  # fmt: skip
    m = both.metrics[task]
    sft_seconds, distill_seconds = _seconds(both, f"train/{task}"), _seconds(both, f"distill/{task}")
    extra = max(1, round(distill_seconds / (sft_seconds / args.sft_epochs))) if sft_seconds else 1
    alone = run(_config(args, root / f"sft-seed{seed}", student=str(student), seed=seed,
                        num_train_epochs=args.sft_epochs + extra))  # fmt: skip
    a = alone.metrics[task]
    return {
        "sft+distill": {"accuracy": m["distilled_accuracy"], "sft_accuracy": m["accuracy"], "n": m["n"],
                        "train_seconds": round(sft_seconds + distill_seconds, 1),
                        "sft_seconds": round(sft_seconds, 1), "distill_seconds": round(distill_seconds, 1),
                        "trainer": m.get("distill_trainer"), "vocabulary": m.get("distill_vocabulary")},
        "sft": {"accuracy": a["accuracy"], "n": a["n"], "epochs": args.sft_epochs + extra,
                "train_seconds": round(_seconds(alone, f"train/{task}"), 1)},
    }  # fmt: skip


def study(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.results_dir) / f"{args.name}.json"
    saved = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    if args.table_only:
        return saved
    if saved.get("recipe") != recipe(args):  # another recipe: its cells say nothing about this one
        saved = {}
    saved.update(recipe=recipe(args), command="python experiments/distill_study.py " + shlex.join(args.argv))
    root = Path(args.root) / args.name
    cells = saved.setdefault("seeds", {})

    def save() -> None:
        saved["versions"] = versions()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(saved, indent=2, default=str) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(render(args.name, saved), encoding="utf-8")

    pending = [s for s in args.seeds if str(s) not in cells]
    if not pending and "teacher" in saved:
        return saved
    start = time.perf_counter()
    if "teacher" not in saved or not Path(saved["teacher"]["folder"]).is_dir():
        saved["teacher"] = teacher_cell(args, root)
        save()
    student = make_student(args, root)
    for seed in pending:
        cells[str(seed)] = seed_cell(args, root, student, saved["teacher"]["folder"], seed)
        save()
        print(f"seed {seed}: {json.dumps(cells[str(seed)])} ({time.perf_counter() - start:.0f} s so far)", flush=True)
    return saved


def student_layers(keep: str, total: int) -> list[int]:
    """The layers a ``k/n`` student keeps of ``total``: the first k of every n."""
    try:
        k, n = (int(x) for x in keep.split("/"))
    except ValueError:
        raise SystemExit(f"--student_keep {keep!r}: expected k/n, e.g. 1/2 or 3/4") from None
    if not 0 < k <= n:
        raise SystemExit(f"--student_keep {keep!r}: k must be between 1 and n")
    return [i for i in range(total) if i % n < k]


def make_student(args: argparse.Namespace, root: Path) -> Path:
    """The base with some of its layers (``--student_keep``); 1/2 keeps its old folder name, student-half."""
    from ftcot_hf.students.loading import load_student

    if args.student_keep == "1/2":
        return keep_layers(args.base, root / "student-half")
    total = load_student(args.base)[0].config.get_text_config().num_hidden_layers
    folder = root / f"student-{args.student_keep.replace('/', 'of')}"
    return keep_layers(args.base, folder, layers=student_layers(args.student_keep, total))


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.mean(values):.2f}{sd}"


def render(name: str, saved: dict[str, Any]) -> str:
    r, teacher, seeds = saved.get("recipe", {}), saved.get("teacher") or {}, saved.get("seeds", {})
    lines = [
        f"# On-policy distillation study `{name}`: SFT only vs SFT + on-policy distillation, {r.get('task')}",
        "",
        f"Teacher: {r.get('base')} fine-tuned by Fine-tune-CoT ({r.get('teacher_epochs'):g} epoch(s), recorded "
        f"text-davinci-002 rationales), test accuracy {pct(teacher.get('accuracy'))} on {teacher.get('n', '-')} "
        f"questions. Student: the same model with {r.get('student_keep', '1/2')} of its decoder layers "
        "(`ftcot_hf.students.shrink.keep_layers`), "
        f"same vocabulary. `sft+distill`: {r.get('sft_epochs'):g} epoch(s) of Fine-tune-CoT "
        f"(lr {r.get('learning_rate')}), "
        f"then {r.get('distill_epochs'):g} of on-policy distillation (lr {r.get('distill_learning_rate')}, beta "
        f"{r.get('distill_beta')}, {r.get('max_completion_length')} sampled tokens); `sft`: Fine-tune-CoT alone for "
        "as many more epochs as the distillation took time. Last-epoch test accuracy, greedy, paper-mode parsing; "
        f"training questions: {r.get('limit_train') or 'all'}, test questions: {r.get('limit_test') or 'all'}.",
        "",
        "| seed | SFT before distillation | **sft+distill** | **sft** (epochs) | seconds sft+distill / sft |",
        "|---|---|---|---|---|",
    ]
    for seed, cell in sorted(seeds.items(), key=lambda kv: int(kv[0])):
        both, alone = cell["sft+distill"], cell["sft"]
        seconds = f"{both['train_seconds']:.0f} / {alone['train_seconds']:.0f}"
        lines.append(f"| {seed} | {pct(both['sft_accuracy'])} | {pct(both['accuracy'])} | {pct(alone['accuracy'])} "
                     f"({alone['epochs']:g}) | {seconds} |")  # fmt: skip
    column = {arm: [c[arm]["accuracy"] for c in seeds.values() if c[arm]["accuracy"] is not None] for arm in ARMS}
    before = [c["sft+distill"]["sft_accuracy"] for c in seeds.values() if c["sft+distill"]["sft_accuracy"] is not None]
    lines.append(f"| mean ± sd ({len(seeds)} seeds) | {_spread(before)} | {_spread(column['sft+distill'])} | "
                 f"{_spread(column['sft'])} | |")  # fmt: skip
    if seeds:
        first = next(iter(seeds.values()))["sft+distill"]
        lines += ["", f"Trainer: {first.get('trainer')}. {first.get('vocabulary') or ''}"]
    lines += ["", f"Command: `{saved.get('command', '')}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    saved = study(args)
    table = render(args.name, saved)
    if args.table_only:
        (Path(args.results_dir) / f"{args.name}.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
