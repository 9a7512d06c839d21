"""The seed spread of one recipe: several results files of `reproduce.py` that differ only in ``--seed``, one table.

A single run's last epoch on 111 (Date) or 687 (StrategyQA) test questions moves by several points from one data
order to the next, so "beats the paper" on one seed can be luck either way. This reads the committed results files
(no run folders, no data) and writes ``experiments/results/<name>.md``: each seed's last epoch, their mean and
standard deviation, the mean of the best epoch (selected on test, as the paper does), and whether the mean of the last
epoch beats the paper's GPT-2 124M best epoch.

    python experiments/seed_spread.py --name cpu_smollm2_lr1e-4_5ep_seeds \\
        cpu_smollm2_lr1e-4_5ep cpu_smollm2_lr1e-4_5ep_seed1 cpu_smollm2_lr1e-4_5ep_seed2 cpu_smollm2_lr1e-4_5ep_seed3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ftcot_hf.evaluation.paper import paper_row, task_sort_key  # noqa: E402
from ftcot_hf.tasks import task_label  # noqa: E402


def spread(results: dict[str, dict[str, Any]], fmt: str = "ft_cot") -> dict[str, dict[str, Any]]:
    """Per task, the seeds' cells of ``fmt`` in the given results files. A task's cells must share one recipe but for
    the seed, and no seed may appear twice: otherwise this is not a seed spread, and a ValueError says where."""
    by_task: dict[str, dict[str, Any]] = {}
    for name, saved in results.items():
        for task, cells in saved.get("results", {}).items():
            cell = cells.get(fmt)
            if not cell or cell.get("accuracy") is None:
                continue
            recipe = dict(cell.get("recipe") or {})
            seed = recipe.pop("seed", None)
            entry = by_task.setdefault(task, {"recipe": recipe, "recipe_from": name, "seeds": {}})
            if recipe != entry["recipe"]:
                changed = sorted(k for k in recipe.keys() | entry["recipe"].keys()
                                 if recipe.get(k) != entry["recipe"].get(k))  # fmt: skip
                raise ValueError(f"{task}: {name} and {entry['recipe_from']} differ in more than the seed "
                                 f"({', '.join(changed)}); a seed spread compares one recipe")  # fmt: skip
            if seed in entry["seeds"]:
                raise ValueError(f"{task}: seed {seed} appears twice (in {entry['seeds'][seed]['file']} and {name})")
            entry["seeds"][seed] = {"file": name, "last": cell["accuracy"], "best": cell.get("best_epoch_accuracy")}
    return by_task


def render(name: str, by_task: dict[str, dict[str, Any]]) -> str:
    paper = paper_row("gpt2", "Fine-tune-CoT", "124M") or {}
    seeds = sorted({s for e in by_task.values() for s in e["seeds"]})
    tasks = sorted(by_task, key=task_sort_key)
    lines = [
        f"# Seed spread `{name}`",
        "",
        "One recipe, several training seeds (the data order; greedy evaluation). **last** = the final epoch's test "
        "accuracy; mean ± sample standard deviation over the seeds run for that task; **best** = the best epoch, "
        "selected on the test set (the paper's protocol). The paper: GPT-2 124M Fine-tune-CoT, best of 20 epochs.",
        "",
        "| task | paper | " + " | ".join(f"seed {s} last" for s in seeds) + " | last: mean ± sd | best: mean | "
        "seeds | beats paper (mean of last) |",
        "|---|---|" + "---|" * len(seeds) + "---|---|---|---|",
    ]
    for task in tasks:
        runs = by_task[task]["seeds"]
        last = [100 * r["last"] for r in runs.values()]
        best = [100 * r["best"] for r in runs.values() if r["best"] is not None]
        sd = f" ± {statistics.stdev(last):.2f}" if len(last) > 1 else ""
        ref = paper.get(task)
        beats = "-" if ref is None else ("yes" if statistics.mean(last) > ref else "no")
        cells = " | ".join(f"{100 * runs[s]['last']:.2f}" if s in runs else "-" for s in seeds)
        lines.append(
            f"| {task_label(task)} | {'-' if ref is None else f'{ref:.2f}'} | {cells} | "
            f"{statistics.mean(last):.2f}{sd} | {f'{statistics.mean(best):.2f}' if best else '-'} | {len(last)} | "
            f"{beats} |"
        )
    files = sorted({r["file"] for e in by_task.values() for r in e["seeds"].values()})
    lines += ["", "From `experiments/results/{" + ",".join(files) + "}.json`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the table: experiments/results/<name>.md")
    parser.add_argument("files", nargs="+", help="results files' names (experiments/results/<file>.json)")
    parser.add_argument("--results_dir", default=str(REPO_ROOT / "experiments" / "results"))
    args = parser.parse_args(argv)
    out = Path(args.results_dir)
    results = {}
    for name in args.files:
        path = out / f"{name}.json"
        if not path.is_file():
            print(f"error: no results file {path}; name one written by experiments/reproduce.py", file=sys.stderr)
            return 2
        results[name] = json.loads(path.read_text(encoding="utf-8"))
    try:
        table = render(args.name, spread(results))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (out / f"{args.name}.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
