"""ftcot-hf: Fine-tune-CoT (Ho, Schmid, Yun, ACL 2023) on the Hugging Face stack.

The public API is the short list below (imported lazily: ``import ftcot_hf`` loads no model library); everything
else is internal and may move.
"""

from __future__ import annotations

from ftcot_hf.utils.lazy import lazy_names

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # tasks
    "Task": "ftcot_hf.tasks.task",
    "TASKS": "ftcot_hf.tasks",
    "get_task": "ftcot_hf.tasks",
    "register_task": "ftcot_hf.tasks",
    "load_task": "ftcot_hf.tasks.builder",
    "FtcotTasks": "ftcot_hf.tasks.builder",
    # answers
    "score_completion": "ftcot_hf.tasks",
    "PREDICTION_PREFIXES": "ftcot_hf.evaluation.metric",
    "AnswerParser": "ftcot_hf.tasks.answers",
    "register_answer_type": "ftcot_hf.tasks.answers",
    # teachers and augmentation
    "Teacher": "ftcot_hf.teachers.base",
    "build_teacher": "ftcot_hf.teachers",
    "register_teacher": "ftcot_hf.teachers",
    "RationaleAugmenter": "ftcot_hf.teach.augment",
    "augment": "ftcot_hf.teach.augment",
    "TeachConfig": "ftcot_hf.teach.cli",
    # students, formats, training
    "StudentFormat": "ftcot_hf.students.formats",
    "get_format": "ftcot_hf.students.formats",
    "register_format": "ftcot_hf.students.formats",
    "format_dataset": "ftcot_hf.students.formats",
    "load_student": "ftcot_hf.students.loading",
    "FineTuneCoTConfig": "ftcot_hf.training.config",
    "train_student": "ftcot_hf.training.trainer",
    "DistillConfig": "ftcot_hf.training.distill_config",
    "distill_student": "ftcot_hf.training.distill",
    # evaluation
    "evaluate_student": "ftcot_hf.evaluation.evaluator",
    "compute_accuracy": "ftcot_hf.evaluation.metric",
    # rewards (TRL's GRPOTrainer)
    "accuracy_reward": "ftcot_hf.rewards",
    "format_reward": "ftcot_hf.rewards",
    # hub and the run
    "push_rationales": "ftcot_hf.hub.publish",
    "push_student": "ftcot_hf.hub.publish",
    "RunConfig": "ftcot_hf.pipeline",
    "run": "ftcot_hf.pipeline",
    # errors
    "FtcotError": "ftcot_hf.errors",
    "PluginTypeError": "ftcot_hf.errors",
    "UnknownTaskError": "ftcot_hf.errors",
    "SourceError": "ftcot_hf.errors",
    "MissingSourceError": "ftcot_hf.errors",
    "ChecksumMismatchError": "ftcot_hf.errors",
    "SourceFormatError": "ftcot_hf.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())
