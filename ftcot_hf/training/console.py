"""What a training run prints: one progress bar (the trainer's), log lines with numbers, not dicts of strings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from transformers import PrinterCallback, ProgressCallback

# Not worth a column in a console line: the run's totals are in train_summary.json and the log history.
_HIDDEN = ("total_flos",)


def _number(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if "loss" in key or "accuracy" in key:
        return f"{value:.4f}"
    if key == "epoch":
        return f"{value:.2f}"
    return f"{value:.4g}"


def format_log_line(logs: Mapping[str, Any], state: Any) -> str:
    """``step 10/80: loss 0.8123, grad_norm 1.52, learning_rate 0.0003, epoch 1.25``."""
    items = [f"{k} {_number(k, v)}" for k, v in logs.items() if k not in _HIDDEN]
    step = f"step {state.global_step}/{state.max_steps}" if getattr(state, "max_steps", 0) else "step"
    return f"{step}: " + ", ".join(items)


class NumericProgressCallback(ProgressCallback):
    """transformers' progress bar, whose log lines print the values as numbers (it prints ``{'loss': '0.81'}``), and
    whose rate (so its ETA) is timed from the end of the session's first step: that step carries the warm-up (the
    first batches, lazy initialisation) and a resumed run's jump to its checkpoint's step, and timed from it the ETA
    started hours long ("1:55:09" for a run of minutes)."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._timed = False

    def on_step_end(self, args, state, control, **kwargs):
        bar = self.training_bar
        if not state.is_world_process_zero or bar is None or getattr(self, "_timed", True):
            return super().on_step_end(args, state, control, **kwargs)
        from tqdm.std import EMA

        self._timed = True
        bar.n = bar.last_print_n = bar.initial = self.current_step = state.global_step
        bar.start_t = bar.last_print_t = bar._time()
        bar._ema_dn, bar._ema_dt = EMA(bar.smoothing), EMA(bar.smoothing)
        bar.refresh()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(format_log_line(logs, state))


class NumericPrinterCallback(PrinterCallback):
    """With ``disable_tqdm``: the same log lines, printed (transformers prints a dict of strings)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            print(format_log_line(logs, state), flush=True)


def use_numeric_logs(trainer: Any) -> None:
    """Swap the trainer's console callbacks for the numeric ones (same bar, same places)."""
    for old, new in ((ProgressCallback, NumericProgressCallback), (PrinterCallback, NumericPrinterCallback)):
        if any(type(cb) is old for cb in trainer.callback_handler.callbacks):
            trainer.remove_callback(old)
            trainer.add_callback(new)
