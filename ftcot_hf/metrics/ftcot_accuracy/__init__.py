"""The ``ftcot_accuracy`` evaluate module (``ftcot_accuracy.py``); load it with ``evaluate.load(<this folder>)``."""
