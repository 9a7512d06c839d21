"""The hub stage: a rationale dataset folder and a trained student published to the Hugging Face Hub, each with the
card its stage wrote. publish.py holds the uploads (:func:`push_rationales`, :func:`push_student`); cli.py is ``ftcot
push`` (:class:`PushConfig`, also the ``hub:`` section of ``ftcot run``'s config, and :func:`push`, which both end
in). (The uploads are not in a ``push.py``: ``ftcot_hf.hub.push`` is the function.)

    >>> from ftcot_hf.hub import push_rationales, push_student
"""

from ftcot_hf.hub.cli import PushConfig, check_repo_id, cli_main, push
from ftcot_hf.hub.publish import (
    STUDENT_IGNORE,
    TOKENIZER_FILES,
    WEIGHT_FILES,
    PushResult,
    check_push_access,
    push_rationales,
    push_student,
    resolve_token,
    stage_student,
    student_generation_config,
)

__all__ = [
    "STUDENT_IGNORE",
    "TOKENIZER_FILES",
    "WEIGHT_FILES",
    "PushConfig",
    "PushResult",
    "check_push_access",
    "check_repo_id",
    "cli_main",
    "push",
    "push_rationales",
    "push_student",
    "resolve_token",
    "stage_student",
    "student_generation_config",
]
