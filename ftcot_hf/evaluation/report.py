"""Reports of evaluations: ``results.json`` (machine-readable, with config and versions), ``completions.jsonl``
(every example, for audit), ``results.md`` (a table per task next to the paper's row) and PNG plots.

Plots use matplotlib's object API (``Figure`` + Agg canvas), so no global backend is touched; without matplotlib
(the ``plots`` extra) they are skipped with a warning.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.evaluator import EvalResult
from ftcot_hf.evaluation.paper import paper_row, task_sort_key, teacher_row
from ftcot_hf.tasks import task_label
from ftcot_hf.utils.fmt import pct

logger = logging.getLogger(__name__)

RESULTS_VERSION = 1
"""Bumped when the layout of results.json changes."""

_PACKAGES = ("ftcot-hf", "torch", "transformers", "datasets", "trl", "evaluate", "peft", "accelerate")


def versions() -> dict[str, str | None]:
    """Installed versions of the stack (None where a package is missing), and Python's."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _paperpct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_paper_row(spec: str | Sequence[str] | None) -> tuple[str, str, str] | None:
    """``"gpt2/Fine-tune-CoT/124M"`` (or a 3-sequence) -> ``(family, method, params)``; None stays None."""
    if spec is None:
        return None
    parts = spec.split("/") if isinstance(spec, str) else list(spec)
    if len(parts) != 3:
        raise ValueError(f"A paper row is 'family/method/params' (e.g. 'gpt2/Fine-tune-CoT/124M'), not {spec!r}.")
    return parts[0], parts[1], parts[2]


def results_markdown(
    results: Sequence[EvalResult], config: Mapping[str, Any], *, paper: tuple[str, str, str] | None = None
) -> str:
    """The ``results.md`` text: settings, one row per evaluation, the paper's figures beside it."""
    reference = paper_row(*paper) if paper else None
    teacher = teacher_row()
    lines = ["# Evaluation results", ""]
    model = config.get("model") or next((r.model for r in results if r.model), None)
    lines.append(f"- model: `{model}`")
    for key in ("format", "split", "mode", "sc", "max_new_tokens", "batch_size", "degree"):
        value = config.get(key)
        if value in (None, "") and key in ("format", "split", "mode"):
            value = ", ".join(sorted({str(getattr(r, key)) for r in results})) or None
        if value not in (None, "", 0):
            lines.append(f"- {key}: `{value}`")
    if paper:
        lines.append(f"- paper row: {paper[1]} {paper[0]} {paper[2]}" + ("" if reference else " (not in the paper)"))
    lines.append("- accuracy in %; the paper reports the best of 20 epochs on the test split, this run one model")
    lines.append("")
    header = ["task", "format", "n", "accuracy", "maj@k", "contains answer", "correct format", "complete"]
    header += ["paper", "teacher (paper)", "time s", "tokens"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in sorted(results, key=lambda r: task_sort_key(r.task)):
        row = [
            task_label(r.task),
            r.format,
            str(r.n),
            pct(r.accuracy),
            "-" if r.maj_at_k is None else f"{pct(r.maj_at_k)} (k={r.k})",
            pct(r.contains_answer),
            pct(r.correct_format),
            pct(r.complete),
            _paperpct(reference.get(r.task)) if reference else "-",
            _paperpct(teacher.get(r.task)),
            f"{r.wall_s:.1f}",
            str(r.generated_tokens),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Examples", ""]
    for r in sorted(results, key=lambda r: task_sort_key(r.task)):
        for ex in r.examples[:2]:
            verdict = "correct" if ex.get("correct") else "wrong"
            lines.append(
                f"- **{r.task}** #{ex.get('sample_index')} ({verdict}, {ex.get('finish_reason')}; gold "
                f"`{ex.get('answer')}`, parsed `{ex.get('prediction')}`): "
                f"`{_short(ex.get('completion', ''))}`"
            )
    return "\n".join(lines) + "\n"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join((text or "").split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'ftcot-hf[plots]'): no plot written.")
        return None
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_accuracy_per_task(
    results: Sequence[EvalResult], out_path: str | os.PathLike, *, paper: tuple[str, str, str] | None = None
) -> Path | None:
    """Bars per task: this run's accuracy, the paper's row (if any) and the paper's Teacher row."""
    fig = _figure(max(6.0, 1.1 * len(results) + 2), 3.6)  # wide enough for the one-row legend
    if fig is None or not results:
        return None
    ordered = sorted(results, key=lambda r: task_sort_key(r.task))
    reference = paper_row(*paper) if paper else None
    teacher = teacher_row()
    series = [("this run", [100 * (r.accuracy or 0.0) for r in ordered])]
    if reference:
        series.append((f"paper {paper[1]} {paper[2]}", [reference.get(r.task) or 0.0 for r in ordered]))
    series.append(("paper Teacher", [teacher.get(r.task, 0.0) for r in ordered]))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for s, (label, values) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(ordered))]
        bars = ax.bar(xs, values, width=width, label=label)
        if len(ordered) <= 4:  # few bars: print the figures on them
            ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=1)
    ax.set_xticks(range(len(ordered)))
    ax.set_xticklabels([task_label(r.task) for r in ordered], rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 118)  # headroom so the legend row never covers a bar
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize="x-small", loc="upper center", ncol=len(series), frameon=False)
    ax.set_title("Accuracy per task")
    fig.tight_layout()
    path = Path(out_path)
    fig.savefig(path)
    return path


def plot_accuracy_vs_degree(
    runs: Mapping[int, Sequence[EvalResult | Mapping[str, Any]]] | Sequence[tuple[int, Sequence[Any]]],
    out_path: str | os.PathLike = "accuracy_vs_degree.png",
) -> Path | None:
    """Accuracy against D (reasoning samples per training question), one line per task.

    Args:
        runs: ``{D: results}`` or ``[(D, results), ...]``; results are :class:`EvalResult` or dicts with ``task``
            and ``accuracy`` (as in results.json).
        out_path: the PNG to write.
    """
    items = list(runs.items()) if isinstance(runs, Mapping) else list(runs)
    points: dict[str, list[tuple[int, float]]] = {}
    for degree, results in items:
        for r in results:
            task = r.task if isinstance(r, EvalResult) else r["task"]
            acc = r.accuracy if isinstance(r, EvalResult) else r.get("accuracy")
            if acc is not None:
                points.setdefault(task, []).append((int(degree), 100 * float(acc)))
    fig = _figure(5.0, 3.6)
    if fig is None or not points:
        return None
    ax = fig.add_subplot(1, 1, 1)
    for task in sorted(points, key=task_sort_key):
        xs, ys = zip(*sorted(points[task]), strict=True)
        ax.plot(xs, ys, marker="o", label=task_label(task))
    degrees = sorted({d for p in points.values() for d, _ in p})
    ax.set_xscale("log", base=2)
    ax.set_xticks(degrees)
    ax.set_xticklabels([str(d) for d in degrees])
    ax.set_xlabel("D (rationales per training question)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize="small")
    ax.set_title("Accuracy vs. reasoning diversity")
    fig.tight_layout()
    path = Path(out_path)
    fig.savefig(path)
    return path


def load_results(path: str | os.PathLike) -> tuple[dict[str, Any], list[EvalResult]]:
    """``(config, results)`` of a results.json (or of the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FtcotError(
            f"No results file at {path}: give a results.json written by `ftcot eval` or its folder."
        ) from None
    except json.JSONDecodeError as e:
        raise FtcotError(f"{path}:{e.lineno}: not valid JSON ({e.msg}).") from None
    if not isinstance(data, dict) or "results" not in data:
        raise FtcotError(f"{path} is not a results.json of `ftcot eval` (no 'results' list).")
    return data.get("config", {}), [EvalResult.from_dict(r) for r in data["results"]]


def write_results(
    results: Sequence[EvalResult],
    out_dir: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    paper: tuple[str, str, str] | str | None = None,
    runs: Mapping[int, Sequence[Any]] | None = None,
) -> dict[str, Path]:
    """Write the report files of ``results`` into ``out_dir``.

    Args:
        results: one :class:`EvalResult` per task (or format).
        out_dir: created if missing.
        config: the run's configuration (stored verbatim in results.json).
        paper: the paper's row to compare with (``"gpt2/Fine-tune-CoT/124M"``); default ``config["paper_row"]``.
        runs: ``{D: results}`` of several runs: adds ``accuracy_vs_degree.png``.

    Returns:
        ``{"json", "completions", "markdown", "plot", "degree_plot"}`` -> paths written (plots only if made).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    row = parse_paper_row(paper if paper is not None else config.get("paper_row"))
    reference = paper_row(*row) if row else None
    teacher = teacher_row()
    payload = {
        "version": RESULTS_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dict(config),
        "versions": versions(),
        "paper_row": "/".join(row) if row else None,
        "results": [r.to_dict(examples=False) for r in results],
        "paper": {
            r.task: {
                "row": reference.get(r.task) if reference else None,
                "teacher": teacher.get(r.task),
            }
            for r in results
        },
    }
    paths: dict[str, Path] = {}
    paths["json"] = out / "results.json"
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    paths["completions"] = out / "completions.jsonl"
    with open(paths["completions"], "w", encoding="utf-8") as f:
        for r in results:
            for ex in r.examples:
                f.write(json.dumps({"task": r.task, "format": r.format, **ex}, default=str) + "\n")
    paths["markdown"] = out / "results.md"
    paths["markdown"].write_text(results_markdown(results, config, paper=row), encoding="utf-8")
    plot = plot_accuracy_per_task(results, out / "accuracy_per_task.png", paper=row)
    if plot is not None:
        paths["plot"] = plot
    if runs:
        degree_plot = plot_accuracy_vs_degree(runs, out / "accuracy_vs_degree.png")
        if degree_plot is not None:
            paths["degree_plot"] = degree_plot
    return paths
