"""Where the paper, robust and math_verify answer-parsing modes disagree on the recorded teacher completions.

Scores the text-davinci-002 replay (Kojima et al.'s recorded two-stage Zero-shot-CoT answers) of every task with
each mode (``evaluate_teacher(task, split="all", mode=...)``) and prints, per task, the accuracy and no-answer rate
of each mode, the number of questions on which the modes' verdicts (correct or not) disagree, and up to 5 examples.

    FTCOT_DATA_MIRROR=/work/shared/data python bench/parsing_modes.py [--tasks multiarith ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys

MODES = ("paper", "robust", "math_verify")


def compare(task_name: str, examples: int = 5) -> dict:
    from ftcot_hf.evaluation.evaluator import evaluate_teacher
    from ftcot_hf.tasks import resolve_task
    from ftcot_hf.tasks.builder import load_task

    task = resolve_task(task_name)
    dataset = load_task(task)
    results = {mode: evaluate_teacher(task, split="all", mode=mode, dataset=dataset) for mode in MODES}
    rows = {mode: results[mode].examples for mode in MODES}
    n = len(rows["paper"])
    verdict_disagree, prediction_disagree, shown = 0, 0, []
    pairs = {f"{a}/{b}": 0 for i, a in enumerate(MODES) for b in MODES[i + 1 :]}
    for i in range(n):
        verdicts = {m: bool(rows[m][i]["correct"]) for m in MODES}
        predictions = {m: rows[m][i]["prediction"] for m in MODES}
        for key in pairs:
            a, b = key.split("/")
            pairs[key] += verdicts[a] != verdicts[b]
        if len(set(predictions.values())) > 1:
            prediction_disagree += 1
        if len(set(verdicts.values())) > 1:
            verdict_disagree += 1
            if len(shown) < examples:
                shown.append(
                    {
                        "sample_index": rows["paper"][i]["sample_index"],
                        "completion": rows["paper"][i]["completion"],
                        "answer": rows["paper"][i]["answer"],
                        **{f"{m}_prediction": predictions[m] for m in MODES},
                        **{f"{m}_correct": verdicts[m] for m in MODES},
                    }
                )
    return {
        "task": task.name,
        "answer_type": task.answer_type,
        "n": n,
        **{f"{m}_accuracy": results[m].accuracy for m in MODES},
        **{f"{m}_no_answer": sum(r["prediction"] is None for r in rows[m]) / n if n else None for m in MODES},
        "verdict_disagree": verdict_disagree,
        "prediction_disagree": prediction_disagree,
        **{f"disagree_{k}": v for k, v in pairs.items()},
        "examples": shown,
    }


def main(argv: list[str] | None = None) -> int:
    from ftcot_hf.tasks import TASKS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--json", default=None, help="Write the full comparison (with examples) here.")
    args = ap.parse_args(argv)
    out = [compare(t) for t in args.tasks]
    head = [
        "task",
        "type",
        "n",
        "acc paper",
        "acc robust",
        "acc m-v",
        "none p/r/m",
        "verdicts differ",
        "p/r",
        "p/m",
        "r/m",
        "preds differ",
    ]
    print(" | ".join(head))
    for r in out:
        pct = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
        none = "/".join(pct(r[f"{m}_no_answer"]) for m in MODES)
        print(
            " | ".join(
                map(
                    str,
                    [
                        r["task"],
                        r["answer_type"],
                        r["n"],
                        pct(r["paper_accuracy"]),
                        pct(r["robust_accuracy"]),
                        pct(r["math_verify_accuracy"]),
                        none,
                        r["verdict_disagree"],
                        r["disagree_paper/robust"],
                        r["disagree_paper/math_verify"],
                        r["disagree_robust/math_verify"],
                        r["prediction_disagree"],
                    ],
                )
            )
        )
    for r in out:
        for ex in r["examples"]:
            preds = ", ".join(f"{m}={ex[f'{m}_prediction']!r}{'+' if ex[f'{m}_correct'] else '-'}" for m in MODES)
            print(f"{r['task']} #{ex['sample_index']} gold={ex['answer']!r} {preds} :: {ex['completion'][:100]!r}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
