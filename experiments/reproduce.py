"""The reproduction study (issue 7): Fine-tune-CoT vs vanilla fine-tuning of one student on the paper's small tasks.

For each task and format it runs `ftcot run` (recorded text-davinci-002 teacher, D = 1) into
``<root>/<format>-<task>`` (stages are reused, so an interrupted study resumes), then writes
``experiments/results/<name>.json`` (every setting and figure), ``<name>.md`` (the table, with the paper's GPT-2 124M
rows beside ours) and ``<name>.png`` (bar chart).

    # CPU-sized (what fits a 2-core machine): 2 epochs, lr 1e-4, bf16 autocast
    python experiments/reproduce.py --name cpu_smollm2 --tasks coin_flip tracking_shuffled_objects
    # the paper's protocol on a GPU (20 epochs, lr 3e-4, per-epoch test accuracy: last and best epoch)
    python experiments/reproduce.py --name gpu_paper --recipe recipes/gpt2_paper.yaml --student smollm2-135m-instruct

Vanilla fine-tuning trains on every training question's gold answer (``keep=all``: the teacher's rationale is
ignored by the format), as in the paper; Fine-tune-CoT on the teacher's correct rationales only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ftcot_hf.evaluation.paper import TASK_LABELS, paper_row  # noqa: E402
from ftcot_hf.evaluation.report import versions  # noqa: E402
from ftcot_hf.pipeline import RunConfig, run  # noqa: E402

SMALL_TASKS = [
    "single_eq", "addsub", "multiarith", "svamp", "date_understanding", "tracking_shuffled_objects",
    "last_letter_concatenation", "coin_flip", "strategy_qa",
]  # fmt: skip
"""The 9 tasks whose training questions have recorded text-davinci-002 completions."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="cpu_smollm2", help="results file name (experiments/results/<name>.*)")
    parser.add_argument("--tasks", nargs="+", default=SMALL_TASKS)
    parser.add_argument("--formats", nargs="+", default=["ft_cot", "vanilla"])
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--recipe", default=None, help="a training recipe YAML (else the flags below)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--use_peft", action="store_true")
    parser.add_argument("--sc", type=int, default=0, help="maj@k of the trained Fine-tune-CoT student")
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--root", default="runs/repro")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--limit_train", type=int, default=None, help="quick runs: first N train questions")
    parser.add_argument("--limit_test", type=int, default=None, help="quick runs: first N test questions")
    args = parser.parse_args()

    rows: dict[str, dict[str, dict]] = {}
    for task in args.tasks:
        for fmt in args.formats:
            config = RunConfig(
                tasks=[task], format=fmt, student=args.student, recipe=args.recipe,
                num_train_epochs=args.epochs, learning_rate=args.learning_rate, use_peft=args.use_peft,
                keep="correct" if fmt != "vanilla" else "all", sc=args.sc if fmt != "vanilla" else 0,
                eval_untrained=False, eval_max_new_tokens=args.max_new_tokens if fmt != "vanilla" else 16,
                data_dir=args.data_dir, limit_train=args.limit_train, limit_test=args.limit_test,
                output_dir=f"{args.root}/{args.name}/{fmt}-{task}",
            )  # fmt: skip
            start = time.perf_counter()
            result = run(config)
            metrics = result.metrics[task] | {"wall_s": time.perf_counter() - start}
            rows.setdefault(task, {})[fmt] = metrics
            print(f"{task} {fmt}: {100 * (metrics.get('accuracy') or 0):.2f}%", flush=True)

    settings = {k: v for k, v in vars(args).items()}
    out = REPO_ROOT / "experiments" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(
        json.dumps({"settings": settings, "versions": versions(), "results": rows}, indent=2), encoding="utf-8"
    )
    ft_cot, vanilla = paper_row("gpt2", "Fine-tune-CoT", "124M"), paper_row("gpt2", "Fine-tune", "124M")

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    lines = [
        f"# Reproduction: {args.student}, {args.recipe or f'{args.epochs:g} epochs, lr {args.learning_rate}'}"
        + (", LoRA" if args.use_peft else ""),
        "",
        "Accuracy (%) on each task's test split; ours = LAST epoch, greedy, paper-mode parsing; the paper = GPT-2 "
        "124M, best of 20 epochs (selected on test).",
        "",
        "| task | paper Fine-tune-CoT | paper vanilla | ours vanilla | ours Fine-tune-CoT | ours maj@k |",
        "|---|---|---|---|---|---|",
    ]
    for task, by_format in rows.items():
        ours_cot, ours_van = by_format.get("ft_cot", {}), by_format.get("vanilla", {})
        maj = ours_cot.get("maj_at_k")
        lines.append(
            f"| {TASK_LABELS.get(task, task)} | {ft_cot.get(task)} | {vanilla.get(task)} | "
            f"{pct(ours_van.get('accuracy'))} | {pct(ours_cot.get('accuracy'))} | {pct(maj)} |"
        )
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(rows, ft_cot, out / f"{args.name}.png")
    print("\n".join(lines))
    return 0


def _plot(rows: dict[str, dict[str, dict]], paper: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(rows)
    series = [
        ("paper GPT-2 124M Fine-tune-CoT", [paper.get(t) or 0 for t in tasks]),
        ("ours vanilla", [100 * (rows[t].get("vanilla", {}).get("accuracy") or 0) for t in tasks]),
        ("ours Fine-tune-CoT (last epoch)", [100 * (rows[t].get("ft_cot", {}).get("accuracy") or 0) for t in tasks]),
    ]
    fig = Figure(figsize=(max(6.0, 1.2 * len(tasks) + 2), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for s, (label, values) in enumerate(series):
        ax.bar([i + (s - 1) * width for i in range(len(tasks))], values, width=width, label=label)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([TASK_LABELS.get(t, t) for t in tasks], rotation=30, ha="right")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize="x-small", loc="upper center", ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
