"""The run report: results.md, summary.json and its plots (accuracy, loss, accuracy vs D)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftcot_hf.evaluation import EvalResult, plot_accuracy_per_task, plot_accuracy_vs_degree
from ftcot_hf.evaluation.paper import method_for, paper_row, teacher_row
from ftcot_hf.pipeline.config import RunConfig
from ftcot_hf.pipeline.stages import resolve_bf16
from ftcot_hf.utils.fmt import pct
from ftcot_hf.utils.scrub import redact


def _subset(m: dict[str, Any]) -> str:
    """' (first 50)' when the untrained row scored fewer test questions than the trained one."""
    n = m.get("untrained_n")
    return f" (first {n})" if m.get("untrained_accuracy") is not None and n and n != m.get("n") else ""


# --- report --------------------------------------------------------------------------------------------------------
def _plot_loss(logs: dict[str, list[dict[str, float]]], out: Path) -> Path | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    points = {t: log for t, log in logs.items() if log}
    if not points:
        return None
    fig = Figure(figsize=(5.0, 3.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for task, log in points.items():
        ax.plot([p["epoch"] for p in log], [p["loss"] for p in log], marker=".", label=task)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("Training loss")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out)
    return out


def write_report(
    config: RunConfig, run_dir: Path, per_task: dict[str, dict[str, Any]], stages: dict[str, Any]
) -> Path:
    """The run's ``report/``: results.md (every stage side by side, the paper's rows beside them), its plots and
    summary.json (the config, each task's metrics, each stage's status)."""
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    # The paper's GPT-2 124M row of the same method (Fine-tune-CoT, Diverse reasoning, vanilla Fine-tune).
    method = method_for(config.format, config.degree) or "Fine-tune-CoT"
    lines = _headline(config, per_task, method)
    lines += _distill_lines(config, per_task)
    lines += _epoch_lines(per_task) + _decontamination_lines(per_task) + _stage_lines(stages)
    plots = _plots(config, run_dir, per_task, out, method)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "Files: `rationales/` (load_dataset(<it>, task)), `eval_untrained/`, `student/`, `eval/` "
              "(results.json, completions.jsonl per task)" + ("; `distilled/`, `eval_distilled/`." if config.distill
                                                             else ".")]  # fmt: skip
    report = out / "results.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = redact({"config": config.to_dict(), "tasks": per_task, "stages": stages})
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return report


def _headline(config: RunConfig, per_task: dict[str, dict[str, Any]], method: str) -> list[str]:
    """The run in two lines and the table of each task: rationales kept, untrained, trained, maj@k, the paper's."""
    paper = paper_row("gpt2", method, "124M") or {}
    teacher = teacher_row()
    training = config.recipe or (
        f"lr {config.learning_rate}, {config.num_train_epochs:g} epoch(s), batch "
        f"{config.per_device_train_batch_size}, bf16={resolve_bf16(config)}"
    )
    lines = [
        "# ftcot run report",
        "",
        f"- teacher: `{config.teacher}` (D={config.degree}, filter: {config.keep}); student: `{config.student}`; "
        f"format: `{config.format}`",
        f"- training: {training}" + (f", LoRA r={config.lora_r}" if config.use_peft else ""),
        "- accuracy in % on the test split, last epoch, greedy decoding stopped at END, paper-mode parsing",
        "",
        f"| task | rationales kept | untrained | trained | maj@k | paper GPT-2 124M {method} | paper Teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, m in per_task.items():
        maj = "-" if m.get("maj_at_k") is None else f"{pct(m['maj_at_k'])} (k={config.sc})"
        ref = paper.get(task)
        lines.append(
            f"| {task} | {m.get('kept', '-')}/{m.get('questions', '-')} | {pct(m.get('untrained_accuracy'))}"
            f"{_subset(m)} | "
            f"{pct(m.get('accuracy'))} | {maj} | {'-' if ref is None else f'{ref:.2f}'} | "
            f"{teacher.get(task, '-')} |"
        )
    return lines


def _epoch_lines(per_task: dict[str, dict[str, Any]]) -> list[str]:
    """The epoch selected on held-out questions, and each epoch's test accuracy where the best is selected on test."""
    lines: list[str] = []
    selected = {t: m for t, m in per_task.items() if m.get("validation_split")}
    if selected:
        lines += ["", "Epoch selected on validation: train questions held out by question (seeded, never trained on), "
                  "scored after each epoch on their gold answers; the selected epoch's test accuracy. The headline "
                  "above is the last epoch:", ""]  # fmt: skip
        for task, m in selected.items():
            lines.append(_validation_line(task, m, pct))
    scored = {t: m for t, m in per_task.items() if m.get("epoch_accuracy") and "best_epoch" in m}
    if scored:
        lines += ["", "Test accuracy after each epoch; the best epoch is selected on the test set (the paper's "
                  "protocol; optimistic), the headline above is the last:", ""]  # fmt: skip
        for task, m in scored.items():
            epochs = ", ".join(f"{e}: {pct(a)}" for e, a in m["epoch_accuracy"].items())
            lines.append(f"- {task}: {epochs}; best epoch {m['best_epoch']} ({pct(m['best_epoch_accuracy'])})")
    return lines


def _decontamination_lines(per_task: dict[str, dict[str, Any]]) -> list[str]:
    """The train/test overlap the teach stage found, per task."""
    checked = {t: m["decontamination"] for t, m in per_task.items() if m.get("decontamination")}
    if not checked:
        return []
    lines = ["", "Train/test overlap (`ftcot decontaminate` lists every id):", ""]
    for task, d in checked.items():
        pairs = ", ".join(f"{a}~{b}" for a, b in d["exact_pairs"][:10])
        lines.append(
            f"- {task}: {d['exact']} test question(s) also in train{f' (train~test: {pairs})' if pairs else ''}; "
            f"{d['ngram_overlap']} of {d['n_train']} train questions share a {d['ngram']}-gram with a test "
            f"question ({d['near_duplicates']} near-duplicates); {d['rationales']} kept rationale(s) contain a "
            f"test question's {d['ngram']}-gram"
        )
    return lines


def _stage_lines(stages: dict[str, Any]) -> list[str]:
    """Each stage: ran or reused, and the seconds it took when it ran."""
    lines = ["", "## Stages", "", "| stage | status | seconds (when it ran) |", "|---|---|---|"]
    for name, s in stages.items():
        took = s.get("seconds") if s["status"] == "ran" else s.get("original_seconds")
        lines.append(f"| {name} | {s['status']} | {'-' if took is None else f'{took:.1f}'} |")
    return lines


def _plots(config: RunConfig, run_dir: Path, per_task: dict[str, dict[str, Any]], out: Path,
           method: str) -> list[Path]:  # fmt: skip
    """The plots made (where matplotlib is there): accuracy per task beside the paper's row, the training loss,
    accuracy vs D over sibling runs."""
    trained = [EvalResult(accuracy=m["accuracy"], contains_answer=None, correct_format=None, complete=None,
                          n=m.get("n", 0), task=task)
               for task, m in per_task.items() if m.get("accuracy") is not None]  # fmt: skip
    logs = {}
    for task in per_task:
        log_file = run_dir / "student" / task / "loss_log.json"
        if log_file.exists():
            logs[task] = json.loads(log_file.read_text(encoding="utf-8"))
    made = (plot_accuracy_per_task(trained, out / "accuracy.png", paper=("gpt2", method, "124M")),
            _plot_loss(logs, out / "loss.png"),
            _plot_degrees(config, run_dir, per_task, out / "accuracy_vs_degree.png"))  # fmt: skip
    return [p for p in made if p]


def _distill_lines(config: RunConfig, per_task: dict[str, dict[str, Any]]) -> list[str]:
    """The SFT student and the distilled one side by side (``--distill on_policy``): same test questions, same
    evaluation, last epoch of each."""
    distilled = {t: m for t, m in per_task.items() if m.get("distilled_accuracy") is not None}
    if not distilled:
        return []
    lines = ["", f"On-policy distillation after Fine-tune-CoT (`--distill {config.distill}`, teacher "
             f"`{config.distill_teacher_name}`, beta {config.distill_beta:g}, lmbda {config.distill_lmbda:g}): the "
             "trained student and the distilled one on the same test questions, last epoch of each:", "",
             "| task | SFT student | distilled | change (points) | trainer |", "|---|---|---|---|---|"]  # fmt: skip
    for task, m in distilled.items():
        sft, after = m.get("accuracy"), m["distilled_accuracy"]
        change = "-" if sft is None or after is None else f"{100 * (after - sft):+.2f}"
        lines.append(f"| {task} | {pct(sft)} | {pct(after)} | {change} | {m.get('distill_trainer') or '-'} |")
    lines.append("")
    for task, m in distilled.items():
        scores = ", ".join(f"{e}: {pct(a)}" for e, a in (m.get("distilled_epoch_accuracy") or {}).items())
        tail = f" Test accuracy after each distillation epoch: {scores}." if scores else ""
        lines.append(f"- {task}: {m.get('distill_vocabulary') or ''}{tail}")
    return lines


def _validation_line(task: str, m: dict[str, Any], pct: Any) -> str:
    split = m["validation_split"]
    held = split["held_out_sample_indices"]
    shown = ", ".join(str(i) for i in held[:20]) + (f", ... ({len(held)} in all)" if len(held) > 20 else "")
    epochs = ", ".join(f"{e}: {pct(a)}" for e, a in m["validation_accuracy"].items())
    return (
        f"- {task}: {split['validation_questions']} of the {split['questions']} train questions with rationales held "
        f"out (seed {split['seed']}; sample_index {shown}; student/{task}/validation_split.json); validation "
        f"accuracy after each epoch {epochs}; selected epoch {m['validation_epoch']} (validation "
        f"{pct(m['validation_epoch_accuracy'])}): test {pct(m['validation_epoch_test_accuracy'])}"
    )


def _plot_degrees(config: RunConfig, run_dir: Path, per_task: dict[str, dict[str, Any]], out: Path) -> Path | None:
    """Accuracy vs D over this run and its sibling run folders with the same student and format (a D sweep is
    several runs side by side: `ftcot run --degree 4 --output_dir runs/d4` ...)."""

    runs: dict[int, list[dict[str, Any]]] = {}
    for summary_file in sorted(run_dir.parent.glob("*/report/summary.json")):
        if summary_file.parent.parent.resolve() == run_dir.resolve():
            continue
        try:
            other = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        other_config = other.get("config") or {}
        if (other_config.get("student"), other_config.get("format")) != (config.student, config.format):
            continue
        results = [{"task": t, "accuracy": m.get("accuracy")} for t, m in (other.get("tasks") or {}).items()]
        runs.setdefault(int(other_config.get("degree", 1)), []).extend(results)
    mine = [{"task": t, "accuracy": m.get("accuracy")} for t, m in per_task.items()]
    runs.setdefault(config.degree, []).extend(mine)
    if len(runs) < 2:
        return None
    return plot_accuracy_vs_degree(runs, out)
