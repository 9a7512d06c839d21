"""The 12 Fine-tune-CoT tasks: one module each (``ftcot_hf/tasks/<name>.py``), registered here in paper order.

Adding a task is adding one module that defines ``TASK = TaskSpec(...)`` and one line in ``_MODULES``.
"""

from __future__ import annotations

import difflib
import importlib

from ftcot_hf.errors import UnknownTaskError
from ftcot_hf.tasks.spec import TaskSpec

_MODULES = (
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

TASKS: dict[str, TaskSpec] = {name: importlib.import_module(f"ftcot_hf.tasks.{name}").TASK for name in _MODULES}
"""Task name -> task definition, in the paper's order."""


def get_task(name: str) -> TaskSpec:
    """The task definition of ``name``; an unknown name raises :class:`UnknownTaskError` with the valid names."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), TASKS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownTaskError(f"Unknown task {name!r}.{hint} Valid tasks: {', '.join(TASKS)}.") from None


__all__ = ["TASKS", "TaskSpec", "get_task"]
