"""ftcot-hf: Fine-tune-CoT (Ho, Schmid, Yun, ACL 2023) on the Hugging Face stack.

The public API is the short list below; everything else is internal and may move.
"""

from ftcot_hf.answers import PREDICTION_PREFIXES, score_completion
from ftcot_hf.errors import (
    ChecksumMismatchError,
    FtcotError,
    MissingSourceError,
    SourceError,
    SourceFormatError,
    UnknownTaskError,
)
from ftcot_hf.tasks import TASKS, TaskSpec, get_task
from ftcot_hf.tasks.builder import FtcotTasks, load_task

__version__ = "0.1.0"

__all__ = [
    "TASKS",
    "PREDICTION_PREFIXES",
    "ChecksumMismatchError",
    "FtcotError",
    "FtcotTasks",
    "MissingSourceError",
    "SourceError",
    "SourceFormatError",
    "TaskSpec",
    "UnknownTaskError",
    "get_task",
    "load_task",
    "score_completion",
]
