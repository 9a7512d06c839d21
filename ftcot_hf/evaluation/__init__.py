"""Evaluation of students and baselines: the paper's metric, self-consistency (maj@k), the Teacher row, reports and
the ``ftcot eval`` command; the students generate with :mod:`ftcot_hf.students.generation` (stop at END).

    >>> from ftcot_hf.evaluation import compute_accuracy
    >>> compute_accuracy([" The coin was flipped once. --> no "], ["no"], task="coin_flip")["accuracy"]
    1.0

Nothing heavy is imported here: torch and transformers load when generation runs.
"""

from ftcot_hf.evaluation.baselines import BASELINES, FEW_SHOT_COT_SOURCE, few_shot_cot_exemplars, few_shot_cot_prompt
from ftcot_hf.evaluation.evaluator import EvalResult, evaluate_completions, evaluate_student, evaluate_teacher
from ftcot_hf.evaluation.metric import compute_accuracy, resolve_prefix
from ftcot_hf.evaluation.report import (
    load_results,
    plot_accuracy_per_task,
    plot_accuracy_vs_degree,
    write_results,
)
from ftcot_hf.evaluation.selfconsistency import majority_vote

__all__ = [
    "BASELINES",
    "FEW_SHOT_COT_SOURCE",
    "EvalResult",
    "compute_accuracy",
    "evaluate_completions",
    "evaluate_student",
    "evaluate_teacher",
    "few_shot_cot_exemplars",
    "few_shot_cot_prompt",
    "load_results",
    "majority_vote",
    "plot_accuracy_per_task",
    "plot_accuracy_vs_degree",
    "resolve_prefix",
    "write_results",
]
