"""The teach stage: task questions in, a rationale dataset folder out (Fine-tune-CoT steps 1-2).

cli.py is ``TeachConfig`` (every option of ``ftcot teach``) and :func:`teach`, which runs it; augment.py asks the
teacher (two-stage / one-stage / reasoning-trace protocols), recipe.py filters the samples, yields.py counts them;
folder.py saves the dataset folder with its card (card.py); decontamination.py checks the taught questions against
the test split; merge.py (``ftcot merge``) and ray_data.py put the parts of a sharded run together. The names below
are imported on first use, so ``import ftcot_hf.teach.yields`` loads no teacher.

    >>> from ftcot_hf.teach import TeachConfig, teach
"""

from __future__ import annotations

from ftcot_hf.utils.lazy import lazy_names

_NAMES = {
    "EXIT_INCOMPLETE": "ftcot_hf.teach.cli",
    "TeachIncompleteError": "ftcot_hf.teach.cli",
    "cli_main": "ftcot_hf.teach.cli",
    "incomplete_message": "ftcot_hf.teach.cli",
    "likely_cause": "ftcot_hf.teach.cli",
    "remove_partial": "ftcot_hf.teach.cli",
    "teach": "ftcot_hf.teach.cli",
    "TeachConfig": "ftcot_hf.teach.cli",
    "cache_path": "ftcot_hf.teach.cli",
    "parse_kwargs": "ftcot_hf.teach.cli",
    "shard_cache_file": "ftcot_hf.teach.cli",
    "shard_range": "ftcot_hf.teach.cli",
    "MAX_RATIONALES_CHECKED": "ftcot_hf.teach.decontamination",
    "check_output_dir": "ftcot_hf.teach.folder",
    "save_rationales": "ftcot_hf.teach.folder",
}

__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
