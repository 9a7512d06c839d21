"""What a run prints is about the run (issue 32 item 7): no library warning about our own callbacks, an ETA timed
from steady steps, a warning when there is next to nothing to train on, and `pytest -q` that prints no tables.
(The resumed tied student's "missing keys" warning: tests/test_checkpoints.py.)"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from ftcot_hf.training.callbacks import EpochEvalCallback
from ftcot_hf.training.config import FineTuneCoTConfig
from ftcot_hf.training.console import NumericProgressCallback
from ftcot_hf.training.trainer import train_student
from tests.doubles import coin_records


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_run_scoring_validation_and_test_each_epoch_adds_its_callbacks_without_a_warning(tmp_path):
    """An own-data run scores its validation hold-out and the test split after every epoch: two scorers, which
    transformers called "a ... EpochEvalCallback ... but there is already one"."""
    from transformers.trainer_callback import CallbackHandler

    from ftcot_hf.training.callbacks import ValidationEvalCallback  # the run's validation scorer

    rows = coin_records(2)
    common = {"task": "coin_flip", "format": "ft_cot", "output_dir": tmp_path}
    handler = Collect()
    logging.getLogger("transformers").addHandler(handler)  # transformers' loggers do not propagate
    try:
        callbacks = CallbackHandler([ValidationEvalCallback(rows, **common)], None, None, None, None)
        callbacks.add_callback(EpochEvalCallback(rows, **common))
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [m for m in handler.messages if "already one" in m], handler.messages
    assert [c.split for c in callbacks.callbacks if isinstance(c, EpochEvalCallback)] == ["validation", "test"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _eta(bar) -> str:
    return re.search(r"<([^,\]]+)", bar.format_meter(**bar.format_dict)).group(1)


def _seconds(eta: str) -> int:
    total = 0
    for part in eta.split(":"):
        total = 60 * total + int(part)
    return total


@pytest.mark.parametrize("resumed_at", [0, 40])
def test_the_training_eta_is_timed_from_steady_steps(resumed_at):
    """The first step of a session (warm-up; a resume's jump to its checkpoint) took 60 s, the next ones 10 s each:
    the ETA is not shown from the first step alone and then counts 10 s a step (it started at "1:39:00")."""
    clock = FakeClock()
    callback = NumericProgressCallback()
    args, control = SimpleNamespace(), SimpleNamespace()
    state = SimpleNamespace(max_steps=100, global_step=resumed_at, is_world_process_zero=True)
    callback.on_train_begin(args, state, control)
    bar = callback.training_bar
    bar.fp = io.StringIO()
    bar._time = clock
    bar.start_t = bar.last_print_t = clock()
    try:
        clock.now, state.global_step = 60.0, resumed_at + 1
        callback.on_step_end(args, state, control)
        assert bar.n == resumed_at + 1 and _eta(bar) == "?", _eta(bar)
        for step in range(2, 5):
            clock.now, state.global_step = 60.0 + 10 * (step - 1), resumed_at + step
            callback.on_step_end(args, state, control)
        remaining = 100 - (resumed_at + 4)
        assert _seconds(_eta(bar)) == pytest.approx(10 * remaining, abs=2), _eta(bar)  # 10 s a step, rounded
    finally:
        bar.close()


def test_training_on_a_handful_of_rows_is_warned_about(tiny_gpt2, tmp_path, caplog, one_torch_thread):
    config = FineTuneCoTConfig(output_dir=str(tmp_path / "s"), disable_tqdm=True, per_device_train_batch_size=2,
                               num_train_epochs=1, report_to="none", save_strategy="no")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ftcot_hf"):
        train_student(config, str(tiny_gpt2), coin_records(2))
    [line] = [r.getMessage() for r in caplog.records if "Training on only" in r.getMessage()]
    assert "only 2 row(s)" in line and "--limit_train" in line


def test_the_test_suite_prints_no_tables_past_pytests_capture():
    """`pytest -q` printed two 13-row tables (the replayed teacher's accuracy per task): a test's output belongs in
    pytest's capture (shown by `pytest -s` or on failure)."""
    here = Path(__file__)
    offenders = [p.name for p in here.parent.glob("test_*.py")
                 if p != here and "capsys.disabled()" in p.read_text(encoding="utf-8")]  # fmt: skip
    assert offenders == []
