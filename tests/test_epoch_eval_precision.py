"""The per-epoch evaluation scores the student in the precision it is saved and evaluated in, not the training's
mixed precision: with ``bf16`` accelerate wraps ``model.forward`` in ``torch.autocast``, and an epoch scored through
that wrapper was measured in bfloat16 while the last epoch (the eval stage, on the saved float32 student) was not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftcot_hf.students.loading import load_student
from ftcot_hf.training import train_student
from ftcot_hf.training.callbacks import EpochEvalCallback, without_autocast
from tests.doubles import coin_records
from tests.test_training import config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_epochs_are_scored_in_float32_while_training_stays_in_bf16(tiny_gpt2, tmp_path):
    seen: list[tuple[str, torch.dtype]] = []
    phase = {"now": "train"}

    def probe(model, tokenizer, dataset, **kwargs):
        phase["now"] = "eval"
        try:
            with torch.no_grad():
                model(input_ids=torch.tensor([[1, 2, 3, 4]]))
        finally:
            phase["now"] = "train"
        return SimpleNamespace(accuracy=0.5, to_dict=lambda **_: {})

    class Hook(EpochEvalCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.lm_head.register_forward_hook(lambda mod, i, out: seen.append((phase["now"], out.dtype)) and None)
            return super().on_train_begin(args, state, control, model=model, **kwargs)

    records = coin_records(8)
    probe_cb = Hook(records, task="coin_flip", format="ft_cot", output_dir=tmp_path / "probe", evaluate_fn=probe)
    cfg = config(tmp_path, num_train_epochs=2, per_device_train_batch_size=4, bf16=True, save_strategy="no")
    train_student(cfg, str(tiny_gpt2), records, callbacks=[probe_cb])

    evals = [d for p, d in seen if p == "eval"]
    trains = [d for p, d in seen if p == "train"]
    assert evals == [torch.float32, torch.float32]  # one probe per epoch, both outside autocast
    assert trains and set(trains) == {torch.bfloat16}  # the training steps of both epochs kept mixed precision


def test_the_last_epochs_callback_sees_the_saved_students_logits(tiny_gpt2, tmp_path):
    """The callback scores the last epoch with exactly the numbers the saved student gives (same weights, float32);
    through the autocast wrapper the logits differ by ~1e-3 and a near tie between two tokens can flip."""
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    during: list[torch.Tensor] = []

    def probe(model, tokenizer, dataset, **kwargs):
        with torch.no_grad():
            during.append(model(input_ids=ids).logits.float().clone())
        return SimpleNamespace(accuracy=0.5, to_dict=lambda **_: {})

    records = coin_records(8)
    cb = EpochEvalCallback(records, task="coin_flip", format="ft_cot", output_dir=tmp_path / "cb", evaluate_fn=probe)
    cfg = config(tmp_path, num_train_epochs=1, per_device_train_batch_size=4, bf16=True, learning_rate=3e-3)
    train_student(cfg, str(tiny_gpt2), records, callbacks=[cb])

    model, _ = load_student(str(tmp_path / "out"))
    with torch.no_grad():
        saved = model(input_ids=ids).logits
    assert model.dtype == torch.float32 and len(during) == 1
    assert torch.allclose(during[0], saved, atol=1e-5, rtol=0), (during[0] - saved).abs().max()


def test_without_autocast_restores_the_wrapper_even_when_the_evaluation_fails():
    class Model:
        def forward(self):
            return "plain"

    m = Model()
    m._original_forward = m.forward
    m.forward = lambda: "autocast"
    with pytest.raises(RuntimeError), without_autocast(m):
        assert m.forward() == "plain"
        raise RuntimeError("generation failed")
    assert m.forward() == "autocast"
    plain = Model()  # never wrapped (no mixed precision): left as it is
    with without_autocast(plain):
        assert plain.forward() == "plain"
    assert "forward" not in plain.__dict__
