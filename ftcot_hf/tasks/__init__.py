"""The task registry: the paper's 12 tasks (one module each, ``ftcot_hf/tasks/<name>.py``, in paper order) and any
task a user registers (:func:`register_task`, e.g. a ``Task.from_dataset``).

A name is turned into a :class:`Task` here, once, at the edge (CLI, configs, public functions taking
``str | Task``); below that, stages receive ``Task`` objects. Adding a built-in task is adding its module and its
line below; a user's task needs no file at all.
"""

from __future__ import annotations

from typing import Any

from ftcot_hf.errors import FtcotError, UnknownTaskError
from ftcot_hf.registry import Registry
from ftcot_hf.tasks.answers import Mode, score_with_parser
from ftcot_hf.tasks.task import Task

BUILTIN_TASKS = (
    "single_eq",
    "addsub",
    "multiarith",
    "gsm8k",
    "aqua",
    "svamp",
    "date_understanding",
    "tracking_shuffled_objects",
    "last_letter_concatenation",
    "coin_flip",
    "commonsense_qa",
    "strategy_qa",
)
"""The paper's tasks, in its order."""

TASKS: Registry[Task] = Registry(
    "task", {name: f"ftcot_hf.tasks.{name}:TASK" for name in BUILTIN_TASKS}, error=UnknownTaskError, base=Task
)
"""Task name -> :class:`Task`: the paper's 12 (in its order), then registered ones."""


def get_task(name: str) -> Task:
    """The registered task called ``name``; an unknown name raises :class:`UnknownTaskError` with the valid names."""
    return TASKS[name]


def resolve_task(task: str | Task) -> Task:
    """``task`` itself if it is a :class:`Task`, else the registered task of that name."""
    return task if isinstance(task, Task) else TASKS[task]


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` available by its name everywhere a built-in's name works (``ftcot_hf.load_task``, the
    augmenter, ``compute_accuracy``, ``ftcot eval --task``). A name that is already registered is an error (a
    built-in's always; another user task's unless ``replace=True``)."""
    TASKS.check(task)
    if task.name in BUILTIN_TASKS or (task.name in TASKS and not replace):
        kind = "a built-in" if task.name in BUILTIN_TASKS else "a registered"
        raise FtcotError(f"The task name {task.name!r} is already taken by {kind} task: choose another --task_name.")
    TASKS.register(task.name, task, replace=True)
    return task


def task_label(name: str) -> str:
    """A task's short name in tables and plots: the registered task's :attr:`Task.report_label`, else the name
    itself (a task known only by its name, e.g. a user dataset's read back from a results file)."""
    return TASKS[name].report_label if name in TASKS else name


def score_completion(
    task: str | Task,
    completion: str,
    gold: str,
    *,
    prefix: str | None = None,
    mode: Mode = "paper",
) -> dict[str, Any]:
    """Parse ``completion`` for ``task`` and compare it with ``gold``.

    Args:
        task: a task name (see ``ftcot_hf.TASKS``) or a :class:`~ftcot_hf.Task`.
        completion: the generated text, without its stop string.
        gold: the gold answer as stored in the task's ``answer`` column.
        prefix: the literal answer prefix of the format (``"-->"`` for Fine-tune-CoT, see
            its ``StudentFormat.prefix``), or None when the format has none.
        mode: ``"paper"`` (bit-exact with the reference) or ``"robust"``.

    Returns:
        ``prediction`` (the chosen candidate text, or None), ``candidates``, ``correct``, ``contains_answer``
        (any candidate is correct), ``correct_format`` (prefix present, or no prefix defined) and ``mode``.

    Example:
        >>> score_completion("coin_flip", "The coin was flipped twice. --> yes", "yes", prefix="-->")["correct"]
        True
    """
    return score_with_parser(resolve_task(task).answer, completion, gold, prefix=prefix, mode=mode)


__all__ = [
    "BUILTIN_TASKS",
    "TASKS",
    "Task",
    "get_task",
    "register_task",
    "resolve_task",
    "score_completion",
    "task_label",
]
