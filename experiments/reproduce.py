"""The reproduction study (issue 7): Fine-tune-CoT vs vanilla fine-tuning of one student on the paper's small tasks.

For each task and format it runs `ftcot run` (recorded text-davinci-002 teacher, D = 1) into
``<root>/<name>/<format>-<task>`` (stages are reused, so an interrupted study resumes and a finished cell costs
nothing), optionally scores the trained Fine-tune-CoT student with self-consistency (``--sc k``: maj@k, into
``<run>/eval_maj<k>/<task>``), then merges the cells into ``experiments/results/<name>.json`` (every setting, command
and figure per cell) and rewrites ``<name>.md`` (the tables, with the paper's GPT-2 124M rows beside ours) and
``<name>.png`` (bar chart). Several invocations with different --formats / --tasks fill one table.

    # what experiments/results/cpu_smollm2.* holds (2 CPU cores, no GPU): 2 epochs, lr 1e-4, bf16 autocast
    python experiments/reproduce.py --formats ft_cot vanilla
    python experiments/reproduce.py --formats ft_cot --sc 8 --tasks coin_flip ...       # + maj@8
    python experiments/reproduce.py --formats tail_rationale --tasks coin_flip ...      # Teacher-LM placement
    # the paper's protocol on a GPU (20 epochs, lr 3e-4, test accuracy after every epoch: last and best epoch)
    python experiments/reproduce.py --name gpu_paper --recipe recipes/gpt2_paper.yaml

Vanilla fine-tuning trains on every training question's gold answer (``keep=all``: the teacher's rationale is
ignored by the format), as in the paper; the rationale formats on the teacher's correct rationales only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ftcot_hf.errors import FtcotError  # noqa: E402
from ftcot_hf.evaluation.paper import paper_row, teacher_row  # noqa: E402
from ftcot_hf.evaluation.report import versions  # noqa: E402
from ftcot_hf.pipeline import RunConfig, resolve_bf16, run, test_split  # noqa: E402
from ftcot_hf.tasks import task_label  # noqa: E402
from ftcot_hf.utils.fmt import pct  # noqa: E402

SMALL_TASKS = [
    "single_eq", "addsub", "multiarith", "svamp", "date_understanding", "tracking_shuffled_objects",
    "last_letter_concatenation", "coin_flip", "strategy_qa",
]  # fmt: skip
"""The 9 tasks whose training questions have recorded text-davinci-002 completions."""

PLACEMENTS = {"ft_cot": "rationale in the middle (`ft_cot`)", "tail_rationale": "rationale at the tail"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="cpu_smollm2", help="results file name (experiments/results/<name>.*)")
    parser.add_argument("--tasks", nargs="+", default=SMALL_TASKS)
    parser.add_argument("--formats", nargs="+", default=["ft_cot", "vanilla"])
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--recipe", default=None, help="a training recipe YAML (else the flags below)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=8, help="per-device train batch size (the paper: 8)")
    parser.add_argument("--lr_scheduler_type", default="constant",
                        help="the paper's constant (default), or e.g. linear (to 0 at the last step)")  # fmt: skip
    parser.add_argument("--use_peft", action="store_true")
    parser.add_argument("--seed", type=int, default=42, help="training seed (data order); a seed spread of one recipe")
    parser.add_argument("--cpu_threads", type=int, default=None, help="torch threads (1 per process when 2 run)")
    parser.add_argument("--sc", type=int, default=0, help="also maj@k of the trained Fine-tune-CoT student")
    parser.add_argument("--sc_temperature", type=float, default=0.7)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--no_every_epoch", dest="every_epoch", action="store_false",
                        help="score only the final model (no per-epoch accuracy, no best-epoch column)")  # fmt: skip
    parser.add_argument("--root", default="runs/repro")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--limit_train", type=int, default=None, help="quick runs: first N train questions")
    parser.add_argument("--limit_test", type=int, default=None, help="quick runs: first N test questions")
    parser.add_argument("--results_dir", default=str(REPO_ROOT / "experiments" / "results"))
    parser.add_argument("--table_only", action="store_true", help="only rewrite the .md/.png from the .json")
    parser.add_argument("--rerun", action="store_true",
                        help="run cells the results file already holds for the same recipe (default: keep them, so "
                             "a study resumes on another machine, or day, from its committed figures)")  # fmt: skip
    args = parser.parse_args()

    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / f"{args.name}.json"
    command = "python experiments/reproduce.py " + shlex.join(sys.argv[1:])
    for task in [] if args.table_only else args.tasks:
        for fmt in args.formats:
            config = _config(args, task, fmt)
            saved = _load(results_file).get("results", {}).get(task, {}).get(fmt)
            if not args.rerun and _measured(saved, config, args.sc if fmt == "ft_cot" else 0):
                print(f"{task} {fmt}: {pct(saved.get('accuracy'))}% (measured before with this recipe: kept)")
                continue
            cell = _run_cell(args, config, task)
            cell["command"] = command
            _save_cell(results_file, task, fmt, cell)  # after every cell: an interrupted study keeps what it measured

    saved = _load(results_file)
    rows = saved.get("results", {})
    baselines = _baselines(results_file, saved, args.data_dir)
    table = render_table(rows, args.name, baselines)
    (out / f"{args.name}.md").write_text(table, encoding="utf-8")
    plot(rows, out / f"{args.name}.png", baselines)
    print(table)
    return 0


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _save_cell(path: Path, task: str, fmt: str, cell: dict[str, Any]) -> None:
    """Merge one cell into the results file: several studies (one per CPU core) fill one table."""

    def merge(saved: dict[str, Any]) -> None:
        rows = saved.setdefault("results", {})
        old = rows.setdefault(task, {}).get(fmt, {})
        if cell.get("maj_at_k") is None and old.get("run_dir") == cell["run_dir"]:
            # a later invocation without --sc keeps the maj@k measured on the same trained student
            cell.update({k: old[k] for k in ("maj_at_k", "k", "maj_greedy_accuracy", "maj_command") if k in old})
        rows[task][fmt] = cell
        saved["versions"] = versions()

    _update(path, merge)


def _update(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the results file under a lock (other studies may be writing it), written atomically."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = _load(path)
        change(saved)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(saved, indent=2, default=str), encoding="utf-8")
        tmp.replace(path)


def constant_baselines(task: str, data_dir: str | None = None, limit_test: int | None = None) -> dict[str, Any]:
    """Test accuracy of answering every question with one fixed answer: the training split's most common gold answer
    (a baseline a student can learn without reasoning), and the test split's own most common one (an oracle: the
    ceiling of any constant answer, chosen on the test set as best-epoch selection is).

    Both put the multiple-choice rows in proportion: on Date the paper's GPT-2 vanilla 27.93 is exactly 31/111, the
    share of "C" among the test answers, so a score near it says little about reasoning."""
    from ftcot_hf import load_task

    splits = load_task(task, data_dir=data_dir)
    test = splits["test"]["answer"][:limit_test] if limit_test else splits["test"]["answer"]
    counts = Counter(test)
    majority = Counter(splits["train"]["answer"]).most_common(1)[0][0]
    best, hits = counts.most_common(1)[0]
    return {"train_majority": majority, "train_majority_accuracy": counts[majority] / len(test),
            "best_constant": best, "best_constant_accuracy": hits / len(test), "n": len(test)}  # fmt: skip


def _baselines(path: Path, saved: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """The constant-answer baselines of the results file's tasks, computed once (from the task data) and kept in the
    file beside the cells, so ``--table_only`` on another machine renders them without the data."""
    known, missing = saved.get("baselines", {}), {}
    for task, cells in saved.get("results", {}).items():
        limit = next(iter(cells.values()), {}).get("limits", {}).get("limit_test")
        if known.get(task, {}).get("n") is None or known[task].get("limit_test") != limit:
            try:
                missing[task] = {**constant_baselines(task, data_dir, limit), "limit_test": limit}
            except FtcotError as e:  # no task data here: the table still renders, with "-" in those columns
                print(f"{task}: no constant-answer baseline ({e})", file=sys.stderr)
    if missing:
        _update(path, lambda current: current.setdefault("baselines", {}).update(missing))
    return {**known, **missing}


def _measured(saved: dict[str, Any] | None, config: RunConfig, sc: int) -> bool:
    """The results file already holds this cell, measured with the same recipe on the same questions (and with the
    maj@k asked for): the figures are committed, the run folder (weights) need not exist any more."""
    if not saved or saved.get("recipe") != _recipe(config) or saved.get("limits", _limits(None)) != _limits(config):
        return False
    return not sc or (saved.get("k") == sc and saved.get("maj_at_k") is not None)


def _limits(config: RunConfig | None) -> dict[str, int | None]:
    return {"limit_train": getattr(config, "limit_train", None), "limit_test": getattr(config, "limit_test", None)}


def _config(args: argparse.Namespace, task: str, fmt: str) -> RunConfig:
    return RunConfig(
        tasks=[task], format=fmt, student=args.student, recipe=args.recipe, use_peft=args.use_peft,
        **({} if args.recipe else {"num_train_epochs": args.epochs, "learning_rate": args.learning_rate,
                                   "per_device_train_batch_size": args.batch_size,
                                   "lr_scheduler_type": args.lr_scheduler_type}),
        seed=args.seed, cpu_threads=args.cpu_threads, keep="correct" if fmt != "vanilla" else "all",
        eval_untrained=False, eval_max_new_tokens=args.max_new_tokens if fmt == "ft_cot" else 16,
        eval_batch_size=args.eval_batch_size, eval_every_epoch=args.every_epoch and fmt == "ft_cot",
        data_dir=args.data_dir, limit_train=args.limit_train, limit_test=args.limit_test,
        output_dir=f"{args.root}/{args.name}/{fmt}-{task}",
    )  # fmt: skip


def _run_cell(args: argparse.Namespace, config: RunConfig, task: str) -> dict[str, Any]:
    fmt = config.format
    start = time.perf_counter()
    result = run(config)
    cell = dict(result.metrics[task])
    cell.update(
        run_dir=str(result.output_dir),
        stages={k: round(v["seconds"], 1) for k, v in result.stages.items()},
        recipe=_recipe(config),
        limits=_limits(config),
        wall_s=round(time.perf_counter() - start, 1),
    )
    print(f"{task} {fmt}: {100 * (cell.get('accuracy') or 0):.2f}%", flush=True)
    if args.sc and fmt == "ft_cot":
        cell.update(_maj_at_k(config, task, args.sc, args.sc_temperature))
        cell["maj_command"] = "python experiments/reproduce.py " + shlex.join(sys.argv[1:])
        print(f"{task} {fmt}: maj@{args.sc} {100 * (cell.get('maj_at_k') or 0):.2f}%", flush=True)
    return cell


def _recipe(config: RunConfig) -> dict[str, Any]:
    keys = ("student", "format", "keep", "degree", "recipe", "learning_rate", "num_train_epochs",
            "per_device_train_batch_size", "max_length", "bf16", "use_peft", "lora_r", "lora_alpha", "seed",
            "eval_max_new_tokens", "eval_every_epoch")  # fmt: skip
    recipe = {k: getattr(config, k) for k in keys}
    recipe["bf16"] = resolve_bf16(config)  # what 'auto' became on this machine
    if config.lr_scheduler_type != "constant":  # recorded only when not the default: older cells still match
        recipe["lr_scheduler_type"] = config.lr_scheduler_type
    if not config.use_peft:
        recipe.pop("lora_r"), recipe.pop("lora_alpha")
    return recipe


def _maj_at_k(config: RunConfig, task: str, k: int, temperature: float) -> dict[str, Any]:
    """Self-consistency of the trained student: k samples at ``temperature`` per question, majority vote.

    Kept apart from the run's eval stage (``<run>/eval_maj<k>/<task>``) so the greedy headline is untouched; reused
    when it exists for the same student and settings."""
    from ftcot_hf.evaluation import evaluate_student, write_results
    from ftcot_hf.students.loading import load_student

    run_dir = Path(config.output_dir)
    folder, student = run_dir / f"eval_maj{k}" / task, run_dir / "student" / task
    settings = {"model": f"{config.student} (Fine-tune-CoT, {task})", "format": config.format, "split": "test",
                "mode": "paper", "sc": k, "sc_temperature": temperature, "seed": config.seed,
                "max_new_tokens": config.eval_max_new_tokens, "limit_test": config.limit_test,
                "student_stage": json.loads((student / "stage.json").read_text())["fingerprint"]}  # fmt: skip
    done = folder / "results.json"
    if not (done.is_file() and json.loads(done.read_text())["config"] == settings):
        test = test_split(run_dir / "rationales", task, config.limit_test)
        model, tokenizer = load_student(str(student))
        start = time.perf_counter()
        result = evaluate_student(model, tokenizer, test, task=task, format=config.format,
                                  batch_size=config.eval_batch_size, max_new_tokens=config.eval_max_new_tokens,
                                  sc=k, sc_temperature=temperature, seed=config.seed, progress=True)  # fmt: skip
        write_results([result], folder, settings)
        (folder / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    scored = json.loads(done.read_text())["results"][0]
    return {"maj_at_k": scored["maj_at_k"], "k": k, "maj_greedy_accuracy": scored["accuracy"]}


# --- table and chart -----------------------------------------------------------------------------------------------
def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _recipe_text(cell: dict[str, Any]) -> str:
    r = cell.get("recipe") or {}
    if r.get("recipe"):
        return f"recipe {r['recipe']}"
    text = f"{r.get('num_train_epochs', 0):g} epochs, lr {r.get('learning_rate')}"
    text += f" ({r.get('lr_scheduler_type', 'constant')}), batch {r.get('per_device_train_batch_size')}"
    text += ", LoRA r" + str(r.get("lora_r")) if r.get("use_peft") else ", full fine-tune"
    text += ", bf16 autocast" if r.get("bf16") in (True, "true") else ", fp32"
    return text + (f", seed {r['seed']}" if r.get("seed", 42) != 42 else "")


def render_table(
    rows: dict[str, dict[str, dict[str, Any]]], name: str, baselines: dict[str, dict[str, Any]] | None = None
) -> str:
    paper_cot, paper_van = paper_row("gpt2", "Fine-tune-CoT", "124M"), paper_row("gpt2", "Fine-tune", "124M")
    teacher = teacher_row()
    tasks = [t for t in SMALL_TASKS if t in rows] + [t for t in rows if t not in SMALL_TASKS]
    recipes = sorted({_recipe_text(c) for t in tasks for c in rows[t].values()})
    students = sorted({(c.get("recipe") or {}).get("student", "?") for t in tasks for c in rows[t].values()})
    ks = sorted({c["k"] for t in tasks for c in rows[t].values() if c.get("k")})
    maj = f"maj@{ks[0]}" if len(ks) == 1 else "maj@k"
    lines = [
        f"# Reproduction `{name}`: student {', '.join(students)}",
        "",
        f"Ours: {'; '.join(recipes)}, on CPU (no GPU was lent; one core per run), D = 1, the recorded "
        "text-davinci-002 "
        "rationales, correct-only filter (vanilla: every training question's answer), paper-mode answer parsing, "
        "greedy decoding. **last** = the final model (the headline); **best** = the best epoch, selected on the "
        "test set (the paper's protocol; optimistic). The paper: GPT-2 124M, 20 epochs, best epoch. **constant** "
        "= every test question answered with one fixed answer: the training split's most common one, and the test "
        "split's own most common one (an oracle, the best any constant answer can do).",
        "",
        f"| task | paper GPT-2 Fine-tune-CoT | paper GPT-2 vanilla | paper teacher | constant: train majority | "
        f"constant: best on test | ours vanilla (last) | "
        f"ours Fine-tune-CoT last | ours Fine-tune-CoT best (epoch) | ours {maj} | beats paper (last) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    baselines = baselines or {}
    for task in tasks:
        cot, van = rows[task].get("ft_cot", {}), rows[task].get("vanilla", {})
        best = "-"
        if cot.get("best_epoch") is not None:
            best = f"{pct(cot.get('best_epoch_accuracy'))} ({cot['best_epoch']})"
        paper = (paper_cot or {}).get(task)
        beats = "-" if cot.get("accuracy") is None or paper is None else (
            "yes" if 100 * cot["accuracy"] > paper else "no")  # fmt: skip
        k = f" @{cot['k']}" if cot.get("k") and len(ks) > 1 else ""
        base = baselines.get(task, {})
        constant = " | ".join(
            f"{pct(base[f'{key}_accuracy'])} ({base[key]})" if base.get(key) is not None else "-"
            for key in ("train_majority", "best_constant")
        )
        lines.append(
            f"| {task_label(task)} | {_num((paper_cot or {}).get(task))} "
            f"| {_num((paper_van or {}).get(task))} "
            f"| {_num(teacher.get(task))} | {constant} | {pct(van.get('accuracy'))} "
            f"| **{pct(cot.get('accuracy'))}** | {best} | "
            f"{pct(cot.get('maj_at_k'))}{k} | {beats} |"
        )
    per_epoch = [t for t in tasks if rows[t].get("ft_cot", {}).get("epoch_accuracy")]
    if per_epoch:
        lines += ["", "Fine-tune-CoT test accuracy after each epoch:", "",
                  "| task | " + " | ".join(f"epoch {e}" for e in _epochs(rows, per_epoch)) + " |",
                  "|---|" + "---|" * len(_epochs(rows, per_epoch))]  # fmt: skip
        for t in per_epoch:
            acc = {int(e): a for e, a in rows[t]["ft_cot"]["epoch_accuracy"].items()}
            lines.append(
                f"| {task_label(t)} | " + " | ".join(pct(acc.get(e)) for e in _epochs(rows, per_epoch)) + " |"
            )
    placed = [t for t in tasks if "tail_rationale" in rows[t]]
    if placed:
        lines += ["", "Teacher-LM placement: where the rationale sits in the training completion (same rationales, "
                  "same recipe; at the tail the student answers first and inference stops at END, so the rationale "
                  "is a training signal only):", "",
                  "| task | vanilla (no rationale) | " + " | ".join(PLACEMENTS.values()) + " |",
                  "|---|---|" + "---|" * len(PLACEMENTS)]  # fmt: skip
        for t in placed:
            cells = " | ".join(pct(rows[t].get(f, {}).get("accuracy")) for f in PLACEMENTS)
            lines.append(f"| {task_label(t)} | {pct(rows[t].get('vanilla', {}).get('accuracy'))} | {cells} |")
    lines += [
        "",
        "Every cell's command, recipe, stage timings and run folder: `experiments/results/" + name + ".json`.",
    ]
    return "\n".join(lines) + "\n"


def _epochs(rows: dict[str, dict[str, dict[str, Any]]], tasks: list[str]) -> list[int]:
    return sorted({int(e) for t in tasks for e in rows[t]["ft_cot"]["epoch_accuracy"]})


def plot(
    rows: dict[str, dict[str, dict[str, Any]]], path: Path, baselines: dict[str, dict[str, Any]] | None = None
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = [t for t in SMALL_TASKS if t in rows] + [t for t in rows if t not in SMALL_TASKS]
    paper = paper_row("gpt2", "Fine-tune-CoT", "124M") or {}
    teacher = teacher_row()

    def ours(fmt: str, key: str = "accuracy") -> list[float]:
        return [100 * (rows[t].get(fmt, {}).get(key) or 0) for t in tasks]

    series = [
        ("paper GPT-2 124M Fine-tune-CoT (best epoch)", [paper.get(t) or 0 for t in tasks]),
        ("ours vanilla (last epoch)", ours("vanilla")),
        ("ours Fine-tune-CoT (last epoch)", ours("ft_cot")),
    ]
    if any(rows[t].get("ft_cot", {}).get("maj_at_k") is not None for t in tasks):
        series.append(("ours Fine-tune-CoT maj@k", ours("ft_cot", "maj_at_k")))
    fig = Figure(figsize=(max(7.0, 1.25 * len(tasks) + 2), 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for s, (label, values) in enumerate(series):
        ax.bar([i + (s - (len(series) - 1) / 2) * width for i in range(len(tasks))], values, width=width, label=label)
    ax.scatter(range(len(tasks)), [teacher.get(t) or 0 for t in tasks], marker="_", s=400, color="black",
               label="paper teacher (text-davinci-002)", zorder=3)  # fmt: skip
    oracle = [100 * b["best_constant_accuracy"] if (b := (baselines or {}).get(t)) else None for t in tasks]
    if any(v is not None for v in oracle):
        ax.scatter([i for i, v in enumerate(oracle) if v is not None], [v for v in oracle if v is not None],
                   marker="_", s=400, color="grey", label="best constant answer (test oracle)", zorder=3)  # fmt: skip
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([task_label(t) for t in tasks], rotation=30, ha="right")
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="x-small", loc="upper center", ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
