"""The paper's figures (accuracy %, test split) for the open-source students, for reports.

Source: ``notebooks/results.ipynb`` of itsnamgyu/reasoning-teacher (camera-ready tables ``tab:performance_gpt2``,
``tab:performance_t5``, ``tab:performance_flan_t5``), transcribed by script. The paper reports the BEST epoch's test
accuracy out of 20 (model selection on the test split); ftcot-hf reports the last epoch by default. "Fine-tune" is
vanilla fine-tuning; "Diverse reasoning" is Fine-tune-CoT with D=64 (MultiArith, SVAMP) or D=8 (others), T=0.7.
The Teacher row is text-davinci-002 Zero-shot-CoT over train+test completions (not a test-only figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftcot_hf.tasks import Task

TEACHER: tuple[float, ...] = (81.50, 76.71, 78.79, 42.17, 29.74, 64.20, 67.58, 53.20, 57.71, 90.04, 60.07, 53.45)
"""text-davinci-002 175B Zero-shot-CoT (the paper's Teacher row, train+test)."""

RANDOM: tuple[float, ...] = (0.00, 0.00, 0.00, 0.00, 20.00, 0.00, 17.12, 33.33, 0.00, 50.00, 20.00, 50.00)

_ROWS: tuple[tuple[str, str, str, tuple[float | None, ...]], ...] = (
    ("gpt2", "Zero-shot", "124M", (0.0, 0.0, 2.22, 0.99, 24.02, 1.0, 18.92, 27.56, 0.0, 6.67, 13.76, 46.72)),
    ("gpt2", "Zero-shot", "355M", (0.66, 0.0, 3.33, 0.15, 19.29, 1.67, 8.11, 32.0, 0.0, 42.67, 13.02, 44.98)),
    ("gpt2", "Zero-shot", "774M", (0.66, 0.0, 2.78, 0.08, 1.57, 0.0, 11.71, 36.89, 0.0, 0.0, 15.4, 23.29)),
    ("gpt2", "Few-shot-CoT", "124M", (0.0, 0.0, 3.33, 1.97, 18.9, 2.0, 13.51, None, 0.0, 44.67, 15.15, 25.91)),
    ("gpt2", "Few-shot-CoT", "355M", (1.32, 5.88, 2.78, 1.29, 18.5, 3.33, 9.91, None, 0.0, 55.33, 19.49, 34.93)),
    ("gpt2", "Few-shot-CoT", "774M", (1.32, 2.52, 2.78, 0.15, 0.79, 4.0, 13.51, None, 0.0, 55.33, 10.32, 38.86)),
    ("gpt2", "Fine-tune", "124M", (5.26, 9.24, 12.22, 2.73, 24.8, 10.33, 27.93, 33.78, 1.33, 60.0, 20.88, 54.44)),
    ("gpt2", "Fine-tune", "355M", (4.61, 8.4, 12.22, 1.59, 24.8, 12.0, 20.72, 33.78, 2.0, 55.33, 20.23, 54.59)),
    ("gpt2", "Fine-tune", "774M", (4.61, 5.04, 10.56, 2.35, 26.38, 10.0, 27.93, 34.67, 2.67, 55.33, 21.38, 52.98)),
    ("gpt2", "Fine-tune-CoT", "124M", (3.95, 5.88, 8.33, 3.03, 22.44, 4.33, 25.23, 38.67, 4.67, 77.33, 22.69, 55.75)),
    ("gpt2", "Fine-tune-CoT", "355M", (5.92, 10.92, 7.78, 2.81, 24.41, 7.33, 25.23, 42.22, 12.0, 83.33, 21.7, 56.19)),
    ("gpt2", "Fine-tune-CoT", "774M", (3.95, 5.88, 8.89, 3.03, 26.77, 6.0, 25.23, 48.0, 7.33, 68.67, 22.28, 53.86)),
    (
        "gpt2",
        "Diverse reasoning",
        "124M",
        (6.58, 5.88, 17.78, None, None, 10.33, 21.62, 45.33, 6.0, 76.0, None, 56.33),
    ),
    (
        "gpt2",
        "Diverse reasoning",
        "355M",
        (6.58, 10.08, 17.78, None, None, 12.33, 25.23, 51.56, 14.0, 83.33, None, 55.46),
    ),
    (
        "gpt2",
        "Diverse reasoning",
        "774M",
        (5.92, 7.56, 17.78, None, None, 10.33, 23.42, 56.89, 8.0, 82.67, None, 55.46),
    ),
    ("t5", "Zero-shot", "60M", (0.0, 0.0, 2.22, 1.74, 11.02, 1.33, 5.41, 32.0, 0.0, 0.0, 7.86, 0.0)),
    ("t5", "Zero-shot", "220M", (0.66, 0.0, 4.44, 1.21, 4.72, 1.0, 1.8, 0.0, 0.0, 0.0, 3.52, 0.0)),
    ("t5", "Zero-shot", "700M", (0.0, 0.84, 2.78, 1.29, 9.45, 1.67, 0.0, 27.56, 0.0, 0.0, 4.1, 0.0)),
    ("t5", "Few-shot-CoT", "60M", (1.32, 3.36, 3.33, 1.97, 24.8, 1.33, 20.72, None, 0.0, 44.67, 19.25, 46.0)),
    ("t5", "Few-shot-CoT", "220M", (1.97, 2.52, 1.11, 1.74, 23.23, 0.33, 9.91, None, 0.0, 55.33, 13.35, 52.55)),
    ("t5", "Few-shot-CoT", "700M", (1.32, 1.68, 2.78, 2.43, 19.69, 3.0, 9.91, None, 0.0, 55.33, 18.92, 53.13)),
    ("t5", "Fine-tune", "60M", (5.92, 8.4, 13.89, 4.02, 29.92, 11.33, 80.18, 94.22, 24.67, 100.0, 22.11, 58.81)),
    ("t5", "Fine-tune", "220M", (5.92, 11.76, 15.0, 5.0, 24.8, 8.67, 78.38, 37.78, 44.0, 100.0, 51.6, 59.24)),
    ("t5", "Fine-tune", "700M", (6.58, 9.24, 13.89, 4.25, 26.77, 9.67, 79.28, 33.78, 50.67, 100.0, 20.88, 61.72)),
    ("t5", "Fine-tune-CoT", "60M", (2.63, 5.04, 5.56, 2.58, 24.02, 9.33, 77.48, 40.0, 29.33, 100.0, 29.48, 54.73)),
    ("t5", "Fine-tune-CoT", "220M", (4.61, 7.56, 10.56, 3.18, 26.77, 7.0, 80.18, 42.67, 47.33, 98.67, 45.37, 55.9)),
    ("t5", "Fine-tune-CoT", "700M", (5.26, 10.92, 10.56, 4.55, 29.92, 9.0, 80.18, 46.22, 52.0, 100.0, 54.22, 56.33)),
    ("t5", "Diverse reasoning", "60M", (7.24, 7.56, 15.0, None, None, 7.67, 81.08, 59.11, 46.67, 100.0, None, 56.04)),
    (
        "t5",
        "Diverse reasoning",
        "220M",
        (5.26, 10.08, 16.11, None, None, 10.33, 82.88, 65.33, 60.67, 100.0, None, 59.68),
    ),
    (
        "t5",
        "Diverse reasoning",
        "700M",
        (7.89, 11.76, 17.78, None, None, 11.33, 81.98, 81.78, 63.33, 100.0, None, 62.15),
    ),
    ("flan-t5", "Zero-shot", "60M", (0.0, 0.0, 1.67, 2.12, 23.62, 2.0, 32.43, 33.78, 0.0, 54.0, 39.07, 48.47)),
    ("flan-t5", "Zero-shot", "220M", (1.32, 0.0, 5.0, 2.5, 27.95, 2.0, 30.63, 31.11, 0.0, 7.33, 72.24, 53.42)),
    ("flan-t5", "Zero-shot", "700M", (1.32, 4.2, 3.89, 2.05, 24.41, 2.67, 9.91, 28.89, 0.0, 54.0, 84.03, 49.34)),
    ("flan-t5", "Few-shot-CoT", "60M", (1.32, 0.84, 1.67, 2.81, 20.87, 1.67, 27.93, None, 0.0, 44.67, 11.79, 51.97)),
    ("flan-t5", "Few-shot-CoT", "220M", (2.63, 0.84, 3.89, 3.64, 24.8, 3.67, 12.61, None, 0.0, 44.67, 70.27, 53.86)),
    ("flan-t5", "Few-shot-CoT", "700M", (12.5, 10.08, 10.0, 7.51, 23.23, 8.33, 20.72, None, 0.0, 44.67, 83.87, 65.21)),
    ("flan-t5", "Fine-tune", "60M", (7.24, 9.24, 16.67, 4.93, 28.74, 10.33, 81.08, 33.78, 39.33, 100.0, 45.95, 58.95)),
    (
        "flan-t5",
        "Fine-tune",
        "220M",
        (5.26, 10.08, 16.11, 5.08, 29.53, 10.67, 83.78, 44.0, 45.33, 100.0, 63.55, 61.14),
    ),
    ("flan-t5", "Fine-tune", "700M", (7.24, 12.61, 18.89, 5.53, 24.8, 11.0, 82.88, 33.78, 53.33, 100.0, 66.75, 63.9)),
    (
        "flan-t5",
        "Fine-tune-CoT",
        "60M",
        (6.58, 5.88, 8.33, 2.96, 23.23, 5.67, 80.18, 36.0, 35.33, 100.0, 42.01, 54.15),
    ),
    (
        "flan-t5",
        "Fine-tune-CoT",
        "220M",
        (4.61, 9.24, 12.22, 4.4, 29.13, 6.0, 83.78, 48.89, 50.0, 100.0, 59.05, 59.97),
    ),
    (
        "flan-t5",
        "Fine-tune-CoT",
        "700M",
        (11.84, 10.92, 14.44, 5.38, 28.35, 10.67, 84.68, 55.11, 64.0, 100.0, 66.83, 59.83),
    ),
    (
        "flan-t5",
        "Diverse reasoning",
        "60M",
        (7.24, 10.92, 17.22, None, None, 10.67, 84.68, 62.22, 46.0, 100.0, None, 56.04),
    ),
    (
        "flan-t5",
        "Diverse reasoning",
        "220M",
        (9.21, 10.92, 21.11, None, None, 12.33, 84.68, 67.11, 56.67, 100.0, None, 60.84),
    ),
    (
        "flan-t5",
        "Diverse reasoning",
        "700M",
        (10.53, 15.13, 20.0, None, None, 13.67, 87.39, 89.33, 65.33, 100.0, None, 61.72),
    ),
    # GPT-3 students (ada 0.3B, babbage 1.3B, curie 6.7B; the legacy OpenAI fine-tune API), tab:performance_oai
    ("gpt3", "Zero-shot", "0.3B", (0.0, 0.84, 6.11, 1.9, 20.47, 2.33, 27.03, 34.22, 0.0, 46.0, 18.1, 48.47)),
    ("gpt3", "Zero-shot", "1.3B", (0.0, 0.0, 5.56, 1.21, 19.29, 1.0, 18.92, 34.67, 0.0, 46.0, 18.67, 48.47)),
    ("gpt3", "Zero-shot", "6.7B", (0.66, 0.84, 3.33, 1.74, 16.54, 2.67, 9.91, 32.89, 0.0, 56.67, 20.23, 52.98)),
    ("gpt3", "Few-shot-CoT", "0.3B", (0.66, 0.84, 3.33, 1.74, 15.75, 2.0, 19.27, None, 0.0, 44.67, 18.43, 42.98)),
    ("gpt3", "Few-shot-CoT", "1.3B", (3.29, 5.88, 5.0, 1.59, 13.78, 4.33, 16.51, None, 0.0, 46.0, 18.67, 46.05)),
    ("gpt3", "Few-shot-CoT", "6.7B", (22.37, 31.93, 10.0, 2.5, 15.75, 11.33, 12.84, None, 0.67, 40.0, 24.73, 54.68)),
    ("gpt3", "Fine-tune", "0.3B", (9.87, 8.4, 8.89, 5.08, 24.41, 7.67, 23.42, 32.44, 28.67, 100.0, 51.68, 60.41)),
    ("gpt3", "Fine-tune", "1.3B", (11.84, 17.65, 17.78, 5.38, 21.26, 14.33, 31.53, 30.22, 30.0, 100.0, 70.93, 60.7)),
    ("gpt3", "Fine-tune", "6.7B", (24.34, 25.21, 15.0, 6.14, 15.35, 20.67, 14.41, 33.78, 32.67, 72.0, 76.17, 65.21)),
    ("gpt3", "Fine-tune-CoT", "0.3B", (7.24, 6.72, 6.11, 3.11, 23.62, 5.0, 17.12, 49.33, 50.67, 99.33, 32.68, 52.55)),
    (
        "gpt3",
        "Fine-tune-CoT",
        "1.3B",
        (11.18, 11.76, 13.33, 4.7, 19.69, 8.0, 38.74, 52.44, 50.67, 100.0, 43.08, 52.69),
    ),
    (
        "gpt3",
        "Fine-tune-CoT",
        "6.7B",
        (20.39, 21.01, 33.33, 6.75, 24.02, 12.67, 60.36, 64.44, 52.67, 98.67, 56.76, 55.02),
    ),
    (
        "gpt3",
        "Diverse reasoning",
        "0.3B",
        (9.21, 10.08, 23.89, None, None, 14.33, 58.56, 61.78, 59.33, 99.33, None, 57.21),
    ),
    (
        "gpt3",
        "Diverse reasoning",
        "1.3B",
        (18.42, 19.33, 27.78, None, None, 16.33, 70.27, 72.0, 60.67, 100.0, None, 57.06),
    ),
    (
        "gpt3",
        "Diverse reasoning",
        "6.7B",
        (24.34, 31.09, 53.33, None, None, 30.33, 83.78, 73.33, 62.0, 100.0, None, 58.22),
    ),
)

FAMILY_SIZES: dict[str, dict[str, float]] = {
    "gpt2": {"124M": 124e6, "355M": 355e6, "774M": 774e6},
    "t5": {"60M": 60e6, "220M": 220e6, "700M": 700e6},
    "flan-t5": {"60M": 60e6, "220M": 220e6, "700M": 700e6},
}
"""Parameter counts of the paper's students (labels as in the tables)."""

def paper_tasks() -> tuple[Task, ...]:
    """The tasks of the paper's tables in its column order: each one's ``Task.paper_column`` (a row's figures are
    one per column, so the columns must be exactly 0..11)."""
    from ftcot_hf.tasks import TASKS  # the 12 task modules load when a table is read, not on import

    return tuple(sorted((t for t in TASKS.values() if t.paper_column is not None), key=lambda t: t.paper_column))


def task_sort_key(name: str) -> tuple[int, str]:
    """Tables and plots list tasks in the paper's order, then the others by name."""
    from ftcot_hf.tasks import TASKS

    column = TASKS[name].paper_column if name in TASKS else None
    return (len(TEACHER) if column is None else column, name)


def _row_dict(values: tuple[float | None, ...]) -> dict[str, float | None]:
    return dict(zip((t.name for t in paper_tasks()), values, strict=True))


def teacher_row() -> dict[str, float]:
    """The paper's Teacher row, task -> accuracy %."""
    return _row_dict(TEACHER)  # type: ignore[return-value]


def paper_row(family: str, method: str, params: str) -> dict[str, float | None] | None:
    """``task -> accuracy %`` of one row of the paper's tables (None where the paper has no such row).

    >>> paper_row("gpt2", "Fine-tune-CoT", "124M")["coin_flip"]
    77.33
    """
    for fam, meth, size, values in _ROWS:
        if (fam, meth, size) == (family, method, params):
            return _row_dict(values)
    return None


def rows() -> list[dict[str, Any]]:
    """Every row: family, method, params and task -> accuracy %."""
    return [{"family": f, "method": m, "params": p, "accuracy": _row_dict(v)} for f, m, p, v in _ROWS]


def method_for(format: str, degree: int | None = None) -> str | None:
    """The paper's method name of an evaluation format, its ``paper_method`` (None: not in the open-source students'
    tables, or not a format); Fine-tune-CoT with D > 1 is "Diverse reasoning"."""
    from ftcot_hf.evaluation.baselines import evaluation_format

    fmt = evaluation_format(format)
    method = fmt.paper_method if fmt is not None else None
    if method == "Fine-tune-CoT" and degree is not None and degree > 1:
        return "Diverse reasoning"
    return method


def match_student(model_type: str | None, num_params: int | None, name: str = "") -> tuple[str, str] | None:
    """``(family, params label)`` of the paper's student closest to a model: the family from its ``model_type``
    (``flan`` in its name makes a T5 a Flan-T5), the size the nearest one within a factor of 1.5; None otherwise
    (a tiny test model, another architecture)."""
    if not model_type or not num_params:
        return None
    family = {"gpt2": "gpt2", "t5": "t5"}.get(model_type)
    if family is None:
        return None
    if family == "t5" and "flan" in name.lower():
        family = "flan-t5"
    label, size = min(FAMILY_SIZES[family].items(), key=lambda kv: abs(kv[1] - num_params))
    return (family, label) if 1 / 1.5 <= num_params / size <= 1.5 else None
