"""Resuming training: a checkpoint truncated by a crash mid-save is detected and skipped; the reported training
loss covers the whole run, not only the steps after the resume."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from ftcot_hf.training.config import FineTuneCoTConfig
from ftcot_hf.training.trainer import checkpoint_problem, last_complete_checkpoint, train_student
from tests.doubles import coin_records

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cfg(out, **kwargs) -> FineTuneCoTConfig:
    values = {"output_dir": str(out), "disable_tqdm": True, "seed": 0, "per_device_train_batch_size": 4,
              "logging_steps": 1, "save_total_limit": 3, "report_to": "none"}  # fmt: skip
    return FineTuneCoTConfig(**{**values, **kwargs})


@pytest.fixture(scope="module")
def two_epochs(tiny_gpt2, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "out"
    _, result = train_student(cfg(out, num_train_epochs=2), str(tiny_gpt2), coin_records(8))
    return out, result


def test_a_truncated_checkpoint_is_removed_and_the_previous_one_used(two_epochs, tmp_path, caplog):
    out = tmp_path / "out"
    shutil.copytree(two_epochs[0], out)
    assert checkpoint_problem(out / "checkpoint-4") is None
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a crash mid-save
    assert "model.safetensors" in checkpoint_problem(out / "checkpoint-4")
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(out) == str(out / "checkpoint-2")
    assert "checkpoint-4 cannot be resumed from" in caplog.text and "checkpoint-2" in caplog.text
    assert not (out / "checkpoint-4").exists()
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "log_hist')
    assert last_complete_checkpoint(out) is None  # none left: training restarts


def test_resuming_past_a_truncated_checkpoint_trains_on(two_epochs, tiny_gpt2, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_epochs[0], out)
    state = out / "checkpoint-4" / "trainer_state.json"
    state.write_text(state.read_text()[:50])  # "Expecting ',' delimiter" before
    _, result = train_student(cfg(out, num_train_epochs=2, resume_from_checkpoint="last"), str(tiny_gpt2),
                              coin_records(8))  # fmt: skip
    assert result.global_step == 4


def test_the_training_loss_of_a_resumed_run_covers_the_whole_run(two_epochs, tiny_gpt2, tmp_path):
    out = tmp_path / "out"
    train_student(cfg(out, num_train_epochs=1), str(tiny_gpt2), coin_records(8))
    _, resumed = train_student(cfg(out, num_train_epochs=2, resume_from_checkpoint="last"), str(tiny_gpt2),
                               coin_records(8))  # fmt: skip
    full = two_epochs[1].training_loss
    assert resumed.global_step == 4
    assert resumed.training_loss == pytest.approx(full, rel=1e-3)


def test_a_student_whose_tokenizer_knows_no_words_is_refused(tiny_gpt2, tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from ftcot_hf.errors import FtcotError

    empty = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                    unk_token="[UNK]", eos_token="[UNK]")  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    with pytest.raises(FtcotError, match="has no usable tokenizer"):
        train_student(cfg(tmp_path / "out", num_train_epochs=1), model, coin_records(8), tokenizer=empty)
    assert not (tmp_path / "out").exists()


def test_resuming_a_tied_student_warns_of_no_missing_lm_head(two_epochs, tiny_gpt2, tmp_path):
    """Issue 32 item 7: the checkpoint saves the tied lm_head.weight once (as the embeddings); transformers warned
    "There were missing keys in the checkpoint model loaded: ['lm_head.weight']" on every resume."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    out = tmp_path / "out"
    train_student(cfg(out, num_train_epochs=1), str(tiny_gpt2), coin_records(8))
    handler = Collect(level=logging.WARNING)
    logging.getLogger("transformers").addHandler(handler)  # transformers' loggers do not propagate to the root
    try:
        trainer, resumed = train_student(cfg(out, num_train_epochs=2, resume_from_checkpoint="last"), str(tiny_gpt2),
                                         coin_records(8))  # fmt: skip
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert resumed.global_step == 4
    assert not [m for m in records if "missing keys" in m], records
    model = trainer.model
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # still tied


def test_a_resumed_runs_logs_continue_its_token_count_and_whole_run_loss(two_epochs, tiny_gpt2, tmp_path):
    """Issue 32 item 7: after a resume, the logged `num_tokens` restarted from zero and the final `train_loss`
    averaged only the steps since the checkpoint."""
    out = tmp_path / "out"
    train_student(cfg(out, num_train_epochs=1), str(tiny_gpt2), coin_records(8))
    trainer, resumed = train_student(cfg(out, num_train_epochs=2, resume_from_checkpoint="last"), str(tiny_gpt2),
                                     coin_records(8))  # fmt: skip
    history = trainer.state.log_history
    tokens = [h["num_tokens"] for h in history if "num_tokens" in h]
    full = json.loads((two_epochs[0] / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    full_tokens = [h["num_tokens"] for h in full if "num_tokens" in h]
    assert tokens == sorted(set(tokens)) and tokens[-1] == full_tokens[-1], (tokens, full_tokens)
    [logged_loss] = [h["train_loss"] for h in history if "train_loss" in h]
    assert logged_loss == pytest.approx(two_epochs[1].training_loss, rel=1e-3)
    assert logged_loss == pytest.approx(resumed.training_loss, rel=1e-6)
