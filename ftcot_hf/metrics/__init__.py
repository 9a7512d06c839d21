"""``evaluate`` modules of ftcot-hf, loaded by their folder (works offline).

Example:
    >>> import evaluate
    >>> from ftcot_hf.metrics import FTCOT_ACCURACY
    >>> metric = evaluate.load(FTCOT_ACCURACY)
    >>> metric.compute(predictions=[" ... --> yes "], references=["yes"], task="coin_flip")["accuracy"]
    1.0
"""

from pathlib import Path

FTCOT_ACCURACY = str(Path(__file__).resolve().parent / "ftcot_accuracy")
"""Absolute path of the ``ftcot_accuracy`` module folder, for ``evaluate.load``."""

__all__ = ["FTCOT_ACCURACY"]
