"""The data recipe study (issue 34 part 3): `--keep all` vs `--keep correct` vs `--keep pass_rate` on the recorded
text-davinci-002 teacher, one student trained per variant, test accuracy per variant.

The recorded teacher has one sample per question (D = 1), so a question's pass rate is 0 or 1 and `--keep pass_rate`
degenerates: its band [0.5, 1] keeps exactly `--keep correct`'s rows (a band below 1 would keep none). The script
checks that (the two rationale sets must be identical, else it stops) and reports the pass_rate row as the correct
row's figures instead of training the same data twice.

Each variant is one `ftcot run` into ``<root>/<name>/<variant>``: finished stages are reused, so an interrupted study
resumes where it stopped (training from its last epoch checkpoint) and a finished variant costs nothing. After each
variant, ``experiments/results/<name>.json`` (settings, yield, rows each filter removed, accuracy) and ``<name>.md``
(the table) are rewritten: what finished is recorded, what did not is marked "not run". ``--teach_only`` runs the
teach stages alone (seconds): the yield table without accuracies. No weights are written to experiments/.

    python experiments/data_recipe.py --task last_letter_concatenation --teach_only      # the yields (seconds)
    python experiments/data_recipe.py --task last_letter_concatenation                   # + a student per variant
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ftcot_hf.pipeline import RunConfig, run  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "all": {"keep": "all"},
    "correct": {"keep": "correct"},
    "pass_rate": {"keep": "pass_rate", "pass_rate_min": 0.5, "pass_rate_max": 1.0},
}


def config_of(args: argparse.Namespace, variant: str) -> RunConfig:
    return RunConfig(
        tasks=[args.task], student=args.student, num_train_epochs=args.epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size, seed=args.seed, eval_untrained=False,
        data_dir=args.data_dir, limit_train=args.limit_train, limit_test=args.limit_test,
        output_dir=f"{args.root}/{args.name}/{variant}", **VARIANTS[variant],
    )  # fmt: skip


def teach_only(config: RunConfig) -> dict[str, Any]:
    """The variant's teach stage alone (``ftcot teach`` with the run's teach section)."""
    from ftcot_hf.teach import save_rationales, teach

    teach_config = config.teach_config(Path(config.output_dir) / "rationales")
    results, reports = teach(teach_config)
    save_rationales(teach_config, results, reports)
    return reports[0].to_dict()


def rationales_of(config: RunConfig, task: str) -> list[tuple[Any, str]]:
    from datasets import load_dataset

    rows = load_dataset(str(Path(config.output_dir) / "rationales"), task)["train"]
    return sorted(zip(rows["sample_index"], rows["rationale"], strict=True))


def study(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.results) / f"{args.name}.json"
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved.update(task=args.task, teacher="text-davinci-002 (recorded, D=1)", command=" ".join(sys.argv))
    cells = saved.setdefault("variants", {})
    for variant in args.variants:
        config = config_of(args, variant)
        start = time.perf_counter()
        if args.teach_only or variant == "pass_rate":
            report = teach_only(config)
            cell = {"yield": _yield(report), "settings": VARIANTS[variant]}
            if variant == "pass_rate":  # D = 1: the band [0.5, 1] is --keep correct's rows, checked here
                same = config_of(args, "correct")
                if not (Path(same.output_dir) / "rationales").is_dir():
                    teach_only(same)
                if rationales_of(config, args.task) != rationales_of(same, args.task):
                    raise SystemExit("pass_rate at D=1 kept other rows than correct: the degeneration assumed here "
                                     "does not hold; train it as its own variant")  # fmt: skip
                cell["same_rows_as"] = "correct"
        else:
            result = run(config)
            metrics = result.metrics[args.task]
            report = json.loads((Path(config.output_dir) / "rationales" / "yield_report.json").read_text())
            cell = {"yield": _yield(report["reports"][0]), "settings": VARIANTS[variant],
                    "accuracy": metrics.get("accuracy"), "n": metrics.get("n"),
                    "training_loss": metrics.get("training_loss")}  # fmt: skip
        old = cells.get(variant, {})
        if "accuracy" in old and "accuracy" not in cell and old.get("yield") == cell["yield"]:
            cell.update({k: old[k] for k in ("accuracy", "n", "training_loss") if k in old})  # keep a trained result
        cell["seconds"] = round(time.perf_counter() - start, 1)
        cells[variant] = cell
        saved["recipe"] = {"student": args.student, "epochs": args.epochs, "learning_rate": args.learning_rate,
                           "batch_size": args.batch_size, "seed": args.seed, "limit_train": args.limit_train,
                           "limit_test": args.limit_test}  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(saved, indent=2) + "\n")
        (out.with_suffix(".md")).write_text(render(args.name, saved))
        print(f"{variant}: {json.dumps(cell)}", flush=True)
    return saved


def _yield(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report.get(k) for k in ("questions", "samples", "correct", "kept", "filters")}


def render(name: str, saved: dict[str, Any]) -> str:
    r = saved.get("recipe", {})
    lines = [
        f"# Data recipe `{name}`: `--keep all` vs `correct` vs `pass_rate` on {saved['task']}",
        "",
        f"Teacher: {saved['teacher']}. Student {r.get('student')}, {r.get('epochs')} epochs, lr "
        f"{r.get('learning_rate')}, batch {r.get('batch_size')}, seed {r.get('seed')}; training questions: "
        f"{r.get('limit_train') or 'all'}, test questions: {r.get('limit_test') or 'all'}. Accuracy: the last "
        "epoch's, greedy, paper-mode parsing. At D = 1 a question's pass rate is 0 or 1: `pass_rate` with the band "
        "[0.5, 1] keeps exactly `correct`'s rows (checked: identical rationale sets), so it is not trained twice.",
        "",
        "| variant | samples | rows removed per filter | kept | test accuracy (%) |",
        "|---|---|---|---|---|",
    ]
    cells = saved.get("variants", {})
    for variant in VARIANTS:
        c = cells.get(variant)
        if c is None:
            lines.append(f"| {variant} | - | - | - | not run |")
            continue
        y = c["yield"]
        removed = ", ".join(f"{k} {v}" for k, v in (y.get("filters") or {}).items()) or "none"
        source = cells.get(c.get("same_rows_as", variant), {})
        acc = source.get("accuracy")
        shown = "not run" if acc is None else f"{100 * acc:.2f} (n={source.get('n')})"
        if c.get("same_rows_as") and acc is not None:
            shown += f" (= {c['same_rows_as']}: same rows)"
        lines.append(f"| {variant} | {y['samples']} | {removed} | {y['kept']} | {shown} |")
    if any(c.get("accuracy") is None for c in cells.values() if not c.get("same_rows_as")):
        lines += ["", "**not run**: no student was trained for that variant yet (about 12 min of training per variant "
                  "on a 2-core CPU, docs/run.md); `python experiments/data_recipe.py` without `--teach_only` trains "
                  "them, resuming where it stopped, and fills these cells."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="data_recipe_cpu")
    parser.add_argument("--task", default="last_letter_concatenation")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--epochs", type=float, default=1.5)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit_train", type=int, default=None)
    parser.add_argument("--limit_test", type=int, default=None)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--root", default="runs/experiments", help="where the run folders go (not committed)")
    parser.add_argument("--results", default=str(REPO_ROOT / "experiments" / "results"))
    parser.add_argument("--teach_only", action="store_true", help="the teach stages alone: yields, no accuracy")
    study(parser.parse_args())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
