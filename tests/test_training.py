"""Training students: loss mask, END + EOS learnt, the lean loss equals TRL's, LoRA, packing, resume, learning,
encoder-decoder students, bad input. Tiny random-init models with a tokenizer trained offline (tests/tiny_models)."""

from __future__ import annotations

import json
import time

import pytest
import torch
from datasets import Dataset

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import EmptyDatasetError, MissingColumnsError
from ftcot_hf.training import FineTuneCoTConfig, FineTuneCoTTrainer, train_student
from ftcot_hf.training.data import DataArgs, load_training_data
from tests.doubles import coin_records

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def config(tmp_path, **kwargs) -> FineTuneCoTConfig:
    defaults = {"output_dir": str(tmp_path / "out"), "num_train_epochs": 1, "disable_tqdm": True, "seed": 0}
    return FineTuneCoTConfig(**{**defaults, **kwargs})


def test_config_has_the_papers_defaults_and_works_with_plain_sfttrainer(tiny_gpt2, tmp_path):
    from trl import SFTTrainer

    c = FineTuneCoTConfig(output_dir=str(tmp_path))
    assert (c.learning_rate, c.per_device_train_batch_size, c.num_train_epochs, c.max_length) == (3e-4, 8, 20, 1024)
    assert c.lr_scheduler_type == "constant" and c.warmup_steps == 0 and c.completion_only_loss is True
    assert c.gradient_checkpointing is False and c.report_to == [] and c.save_strategy == "epoch"
    assert c.bf16 is False  # CPU: fp32, where SFTConfig() would raise for its bf16 default
    assert c.format == "ft_cot" and c.report_best_epoch is False and c.train_sampling_strategy == "group_by_length"
    model, tok = load(tiny_gpt2)
    trainer = SFTTrainer(
        model=model,
        args=c,
        train_dataset=Dataset.from_dict({"prompt": ["q ###"], "completion": [" a END"]}),
        processing_class=tok,
    )
    assert trainer.args.learning_rate == 3e-4


def test_loss_mask_covers_exactly_the_completion_with_end_and_eos(tiny_gpt2, tmp_path):
    model, tok = load(tiny_gpt2)
    data = coin_records(4)
    trainer = FineTuneCoTTrainer(
        model=model, args=config(tmp_path), train_dataset=_formatted(data), processing_class=tok
    )
    for row, record in zip(trainer.train_dataset, data, strict=True):
        prompt_ids = tok(f"{record['question']} ###")["input_ids"]
        completion = f" {record['rationale']} --> {record['answer']} END"
        ids, labels = row["input_ids"], row["labels"]
        assert ids[: len(prompt_ids)] == prompt_ids
        assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids)  # token by token: the prompt is masked...
        assert labels[len(prompt_ids) :] == ids[len(prompt_ids) :]  # ...and every completion token is a label
        assert tok.decode(labels[len(prompt_ids) :]) == completion + tok.eos_token
        assert labels[-1] == tok.eos_token_id and tok.decode(labels[-2:-1]).strip() == "END"
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    lengths = batch["attention_mask"].sum(1)
    for b in range(4):  # padding is not learnt either
        assert (batch["labels"][b, lengths[b] :] == -100).all()


def _formatted(data: Dataset) -> Dataset:
    from ftcot_hf.students.formats import format_dataset

    return format_dataset(data, "ft_cot")


def test_compact_loss_equals_trls_loss_and_gradients(tiny_gpt2, tmp_path):
    model, tok = load(tiny_gpt2)
    trainer = FineTuneCoTTrainer(
        model=model, args=config(tmp_path), train_dataset=_formatted(coin_records(6)), processing_class=tok
    )
    assert trainer._compact
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    results = []
    for compact in (True, False):
        trainer._compact = compact
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n_items)
        loss.backward()
        results.append((loss.detach(), trainer.model.transformer.h[0].mlp.c_fc.weight.grad.clone()))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=1e-5), (loss_a, loss_b)
    assert torch.allclose(grad_a, grad_b, rtol=1e-4, atol=1e-7)
    ref = trainer.model(**{k: v for k, v in batch.items()}).loss  # the model's own mean token loss
    assert torch.allclose(loss_a, ref, rtol=1e-5)


def test_lora_changes_only_adapter_weights(tiny_gpt2, tmp_path):
    from peft import LoraConfig

    model, tok = load(tiny_gpt2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], task_type="CAUSAL_LM", fan_in_fan_out=True)
    trainer, result = train_student(
        config(tmp_path, learning_rate=1e-2, per_device_train_batch_size=4),
        model,
        coin_records(8),
        peft_config=lora,
        tokenizer=tok,
    )
    assert result.global_step == 2
    changed = {k for k, p in trainer.model.named_parameters() if "lora_" in k}
    assert changed and all(p.requires_grad for k, p in trainer.model.named_parameters() if "lora_" in k)
    assert not any(p.requires_grad for k, p in trainer.model.named_parameters() if "lora_" not in k)
    lora_b = [p for k, p in trainer.model.named_parameters() if "lora_B" in k]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: non-zero means the adapters trained
    base = trainer.model.get_base_model()
    for k, v in base.state_dict().items():
        name = k.replace(".base_layer", "")
        if "lora_" not in k and name in before:
            assert torch.equal(v, before[name]), k


def test_packing_keeps_examples_apart(tiny_gpt2, tmp_path):
    model, tok = load(tiny_gpt2)
    model.eval()
    args = config(tmp_path, packing=True, max_length=256, per_device_train_batch_size=1)
    trainer = FineTuneCoTTrainer(
        model=model, args=args, train_dataset=_formatted(coin_records(6)), processing_class=tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) >= 2  # several examples in one packed row
    bounds = [*starts, batch["input_ids"].shape[1]]
    assert all(batch["labels"][0, s] == -100 for s in starts)  # no example learns to predict the next one's start
    with torch.no_grad():
        packed = trainer.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        for s, e in zip(bounds, bounds[1:], strict=False):
            alone = trainer.model(input_ids=batch["input_ids"][:, s:e]).logits[0]
            assert torch.allclose(packed[s:e], alone, atol=1e-4)  # nothing seen across the boundary


def test_resumed_run_continues_from_its_checkpoint(tiny_gpt2, tmp_path):
    from transformers import TrainerCallback

    class CountSteps(TrainerCallback):
        def __init__(self):
            self.steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    data = coin_records(8)
    first = CountSteps()
    train_student(
        config(tmp_path, num_train_epochs=2, per_device_train_batch_size=4), str(tiny_gpt2), data, callbacks=[first]
    )
    assert first.steps == [1, 2, 3, 4] and (tmp_path / "out" / "checkpoint-4").is_dir()
    second = CountSteps()
    trainer, result = train_student(
        config(tmp_path, num_train_epochs=3, per_device_train_batch_size=4, resume_from_checkpoint="last"),
        str(tiny_gpt2),
        data,
        callbacks=[second],
    )
    assert second.steps == [5, 6] and result.global_step == 6  # only the third epoch ran


def test_training_drives_the_loss_down_on_a_synthetic_task(tiny_gpt2, tmp_path):
    """~15 s of training (160 steps): the mean loss of the last 10 steps is under 10% of the first 10 steps'."""
    args = config(
        tmp_path,
        learning_rate=3e-3,
        per_device_train_batch_size=16,
        num_train_epochs=8,
        logging_steps=1,
        save_strategy="no",
    )
    started = time.perf_counter()
    trainer, result = train_student(args, str(tiny_gpt2), coin_records(320))
    elapsed = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"loss: first 10 steps {first:.3f}, last 10 steps {last:.3f}, {elapsed:.1f} s")
    assert last < 0.1 * first, (first, last)
    assert elapsed < 60, elapsed
    assert (tmp_path / "out" / "model.safetensors").is_file() and json.loads(
        (tmp_path / "out" / "train_summary.json").read_text()
    )["global_step"] == result.global_step


def test_bad_input_is_named(tiny_gpt2, tmp_path):
    no_rationale = coin_records(4).remove_columns("rationale")
    with pytest.raises(MissingColumnsError, match=r"format 'ft_cot' needs the column\(s\) rationale"):
        train_student(config(tmp_path), str(tiny_gpt2), no_rationale)
    from ftcot_hf.training.data import prepare_train_dataset

    with pytest.raises(MissingColumnsError, match="lacks the column\\(s\\) completion, prompt"):
        prepare_train_dataset(Dataset.from_dict({"question": ["q"]}), None)
    with pytest.raises(EmptyDatasetError, match="empty"):
        train_student(config(tmp_path), str(tiny_gpt2), coin_records(4).select([]))
    with pytest.raises(FtcotError, match="a decoder-only model: use ft_cot"):
        train_student(config(tmp_path, format="ft_cot_t5"), str(tiny_gpt2), coin_records(4))


def test_correct_only_filter_that_leaves_nothing_is_a_clear_error(tmp_path):
    wrong = coin_records(4).map(lambda r: {"correct": False})
    wrong_dd = __import__("datasets").DatasetDict({"train": wrong, "test": coin_records(2)})
    wrong_dd.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(EmptyDatasetError, match=r"after keeping correct rationales only \(0 of 4\)"):
        load_training_data(DataArgs(dataset=str(tmp_path / "ds")), "coin_flip")
    train, test = load_training_data(DataArgs(dataset=str(tmp_path / "ds"), correct_only=False), "coin_flip")
    assert train.num_rows == 4 and test.num_rows == 2


def test_bf16_on_a_cpu_only_machine_is_cpu_autocast(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")
    config = FineTuneCoTConfig(output_dir=str(tmp_path), bf16=True)  # plain TrainingArguments raises here
    assert config.bf16 and config.use_cpu
    assert not FineTuneCoTConfig(output_dir=str(tmp_path)).bf16  # the paper's fp32 stays the default


# -- lengths, the student folder, the console --------------------------------------------------------------------
def _with_long_rationales(n: int, long: set[int], words: int = 80) -> Dataset:
    return coin_records(n).map(
        lambda row, i: {"rationale": " ".join(["The coin was flipped."] * words)} if i in long else {},
        with_indices=True,
    )


def test_rows_longer_than_max_length_are_counted_warned_once_and_recorded(tiny_gpt2, tmp_path, caplog):
    from transformers import AutoTokenizer

    from ftcot_hf.students.formats import format_dataset

    data = _with_long_rationales(12, long={0, 3, 7})
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    rows = format_dataset(data, "ft_cot")
    lengths = [len(tok(r["prompt"] + r["completion"] + tok.eos_token)["input_ids"]) for r in rows]
    assert [i for i, n in enumerate(lengths) if n > 96] == [0, 3, 7]  # the data is what the test says
    with caplog.at_level("WARNING"):
        train_student(config(tmp_path, max_length=96, max_steps=1, per_device_train_batch_size=4, save_strategy="no"),
                      str(tiny_gpt2), data)  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "training rows are longer than" in r.getMessage()]
    assert len(said) == 1, said
    expected = f"3 of 12 training rows are longer than max_length 96 and were truncated (longest {max(lengths)} "
    assert said[0].startswith(expected + "tokens)") and "Raise --max_length (the student has 512 positions)" in said[0]
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["truncation"] == {"rows": 12, "truncated": 3, "longest": max(lengths), "max_length": 96,
                                     "dropped": 0, "limit": "max_length 96", "capped_from": None}  # fmt: skip


def test_max_length_beyond_the_students_positions_is_capped(tiny_gpt2, tmp_path, caplog):
    data = _with_long_rationales(8, long={2}, words=200)  # one row longer than the 512 positions
    with caplog.at_level("WARNING"):
        trainer, result = train_student(config(tmp_path, max_length=4096, max_steps=1, save_strategy="no"),
                                        str(tiny_gpt2), data)  # fmt: skip
    assert trainer.args.max_length == 512 and result.truncation["max_length"] == 512
    assert result.truncation["truncated"] == 1 and result.truncation["capped_from"] == "4096"
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("ftcot_hf")]
    assert len(said) == 1 and "(--max_length 4096 capped to the student's positions)" in said[0], said
    # A cap that cuts nothing: one warning for a length asked for, none for the default (1024, the paper's).
    for asked, warnings in ((4096, 1), (1024, 0)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            trainer, _ = train_student(config(tmp_path, max_length=asked, max_steps=1, save_strategy="no"),
                                       str(tiny_gpt2), coin_records(8))  # fmt: skip
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("ftcot_hf")]
        assert trainer.args.max_length == 512 and len(said) == warnings, said
        assert all("--max_length 4096 is more than the 512 positions of the student: capped to 512" in m for m in said)


@pytest.mark.parametrize("field", ["max_length", "max_source_length", "max_target_length"])
@pytest.mark.parametrize("value", [0, -5])
def test_a_length_that_is_not_positive_is_refused(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field} must be a positive number of tokens \\(got {value}\\)"):
        FineTuneCoTConfig(output_dir=str(tmp_path), **{field: value})


@pytest.mark.parametrize("field", ["per_device_train_batch_size", "gradient_accumulation_steps", "eval_batch_size"])
def test_a_batch_size_below_one_is_refused(tmp_path, field):
    with pytest.raises(ValueError, match=f"{field} must be 1 or more \\(got 0\\)"):
        FineTuneCoTConfig(output_dir=str(tmp_path), **{field: 0})


def test_the_student_folder_holds_our_card_and_no_partial_paths(tiny_gpt2, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_gpt2, base)
    (base / "README.md").write_text("---\nlicense: mit\n---\n# a base model\n")
    out = tmp_path / "student" / ".coin_flip.partial"  # where `ftcot run` trains
    args = config(tmp_path, output_dir=str(out), task="coin_flip", num_train_epochs=2, per_device_train_batch_size=4,
                  logging_steps=1)  # fmt: skip
    train_student(args, str(base), coin_records(8), dataset_name="someone/ftcot-rationales")
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "model_name: coin_flip\n" in card and "license: mit\n" in card
    assert "datasets:\n- someone/ftcot-rationales\n" in card
    assert "| learning rate | 0.0003 |" in card and "| optimizer steps | 4 |" in card and "| epochs | 2 |" in card
    assert "fine-tuned version of" not in card and "[None]" not in card and "Not recorded" not in card
    assert ".partial" not in card and str(tmp_path) not in card
    for path in out.glob("*.json"):
        assert ".partial" not in path.read_text(), path.name
    assert json.loads((out / "train_summary.json").read_text())["output_dir"] == "coin_flip"
    log = json.loads((out / "loss_log.json").read_text())
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(isinstance(r["loss"], float) for r in log)
    # `ftcot push` builds its card from what the folder recorded when it is not told (recipe, base licence).
    from ftcot_hf.training.outputs import recorded_card_values

    recorded = recorded_card_values(out, str(base))
    assert recorded["license"] == "mit" and recorded["recipe"]["optimizer steps"] == 4
    assert recorded["recipe"]["rationale dataset"] == "someone/ftcot-rationales"


def test_log_lines_are_numbers_one_bar_and_no_warning_on_a_fresh_run(tiny_gpt2, tmp_path, capsys, caplog):
    import re

    capsys.readouterr()
    with caplog.at_level("WARNING"):
        # As `ftcot run` trains: resume from the last checkpoint if any (none: a fresh run, nothing to say), the
        # default max_length 1024 capped at the tiny student's 512 positions (no row is that long: nothing to say).
        args = config(tmp_path, disable_tqdm=False, logging_steps=1, max_steps=2, per_device_train_batch_size=4)
        train_student(args, str(tiny_gpt2), coin_records(8), resume_from_checkpoint="last")
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert re.search(r"step 1/2: loss \d+\.\d{4}, grad_norm [\d.]+, learning_rate 0\.0003", text), text[-2000:]
    assert "'loss': '" not in text  # transformers' dict of strings
    for library_bar in ("Tokenizing", "Adding EOS", "Truncating", "Formatting", "Writing model shards",
                        "Loading weights", "examples/s"):  # fmt: skip
        assert library_bar not in text, library_bar
    assert "\x1b[A" not in captured.err
    assert not [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("ftcot_hf")]


def test_an_unreadable_file_in_a_folder_without_a_card_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(FtcotError, match=r"train.parquet is not a readable Parquet file \(ArrowInvalid: ") as caught:
        load_training_data(DataArgs(dataset=str(folder)), None)
    assert "\n" not in str(caught.value)
    # What datasets says when it reads it itself: one line too, not its "An error occurred while generating".
    from ftcot_hf.training.data import _data_error_text, _is_data_error

    try:
        __import__("pyarrow.parquet").parquet.ParquetFile(folder / "train.parquet")
    except Exception as e:  # noqa: BLE001
        wrapped = RuntimeError("An error occurred while generating the dataset")
        wrapped.__cause__ = e
        assert _is_data_error(wrapped) and _data_error_text(wrapped).startswith("ArrowInvalid: Parquet file size")


def test_rows_whose_prompt_fills_max_length_are_counted_as_dropped_and_all_dropped_is_refused(tiny_gpt2, tmp_path):
    def long_questions(rows: set[int]) -> Dataset:
        return coin_records(8).map(lambda r, i: {"question": r["question"] * 6} if i in rows else {},
                                   with_indices=True)  # fmt: skip

    args = config(tmp_path, max_length=64, max_steps=1, save_strategy="no")
    trainer, result = train_student(args, str(tiny_gpt2), long_questions({1, 4}))
    assert result.truncation["dropped"] == 2 and trainer.train_dataset.num_rows == 6  # what TRL dropped
    with pytest.raises(FtcotError, match="Every one of the 8 training rows has a prompt of max_length 64 tokens"):
        train_student(config(tmp_path, max_length=64, max_steps=1), str(tiny_gpt2), long_questions(set(range(8))))
