"""experiments/reproduce.py: cells merge across invocations, maj@k and per-epoch scores reach the table."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.tiny_models import make_gpt2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO_ROOT / "experiments" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_cells_merge_and_render(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    reproduce = _reproduce()
    tiny = make_gpt2(tmp_path / "tiny")
    res = tmp_path / "results"
    common = ["--name", "t", "--student", str(tiny), "--tasks", "coin_flip", "--epochs", "2", "--limit_train", "12",
              "--limit_test", "4", "--max_new_tokens", "6", "--eval_batch_size", "4", "--root", str(tmp_path / "runs"),
              "--results_dir", str(res), "--data_dir", str(mirror), "--cpu_threads", "1"]  # fmt: skip

    def study(*flags: str) -> dict:
        monkeypatch.setattr(sys, "argv", ["reproduce.py", *common, *flags])
        assert reproduce.main() == 0
        return json.loads((res / "t.json").read_text())["results"]["coin_flip"]

    cells = study("--formats", "ft_cot", "vanilla", "--sc", "2")
    cot, van = cells["ft_cot"], cells["vanilla"]
    assert list(cot["epoch_accuracy"]) == ["1", "2"] and cot["epoch_accuracy"]["2"] == cot["accuracy"]
    assert cot["k"] == 2 and cot["maj_at_k"] is not None and cot["n"] == 4
    assert cot["maj_greedy_accuracy"] == cot["accuracy"]  # the maj@k pass re-derives the same greedy score
    assert "best_epoch" not in van and van["recipe"]["keep"] == "all" and cot["recipe"]["keep"] == "correct"
    maj_file = tmp_path / "runs" / "t" / "ft_cot-coin_flip" / "eval_maj2" / "coin_flip" / "results.json"
    stamp = maj_file.stat().st_mtime_ns

    # A later invocation adds a placement cell and keeps the ft_cot cell measured with the same recipe as it is.
    cells = study("--formats", "ft_cot", "tail_rationale")
    assert set(cells) == {"ft_cot", "vanilla", "tail_rationale"} and cells["ft_cot"] == cot
    assert "--sc 2" in cells["ft_cot"]["maj_command"] and "tail_rationale" in cells["tail_rationale"]["command"]
    # --rerun runs it again: every stage reused, the maj@k already measured on that student kept.
    cells = study("--formats", "ft_cot", "--rerun")
    assert cells["ft_cot"]["maj_at_k"] == cot["maj_at_k"] and cells["ft_cot"]["stages"]["train/coin_flip"] == 0
    # Asking for the same maj@k again reuses its folder (same student, same settings).
    study("--formats", "ft_cot", "--sc", "2", "--rerun")
    assert maj_file.stat().st_mtime_ns == stamp

    # Resumed on another machine (the committed results file, no run folders): measured cells are kept, a cell whose
    # recipe changed (3 epochs) runs.
    shutil.rmtree(tmp_path / "runs")
    before = json.loads((res / "t.json").read_text())["results"]["coin_flip"]
    cells = study("--formats", "ft_cot", "vanilla", "tail_rationale", "--sc", "2")
    assert cells == before and not (tmp_path / "runs").exists()
    cells = study("--formats", "vanilla", "--epochs", "3", "--lr_scheduler_type", "linear", "--seed", "7")
    assert cells["vanilla"]["recipe"]["num_train_epochs"] == 3 and cells["vanilla"]["recipe"]["seed"] == 7
    assert cells["vanilla"]["recipe"]["lr_scheduler_type"] == "linear" and "lr_scheduler_type" not in van["recipe"]
    import torch

    trained = tmp_path / "runs" / "t" / "vanilla-coin_flip" / "student" / "coin_flip" / "training_args.bin"
    trainer_args = torch.load(trained, weights_only=False)
    schedule = trainer_args.lr_scheduler_type
    assert getattr(schedule, "value", schedule) == "linear" and trainer_args.seed == 7  # the flags reached the trainer
    assert reproduce._recipe_text(cells["vanilla"]).endswith(", seed 7") and van["recipe"]["seed"] == 42
    assert "seed" not in reproduce._recipe_text(van)
    assert (tmp_path / "runs" / "t" / "vanilla-coin_flip").is_dir()
    cells["vanilla"] = van  # the table below is the 2-epoch study's
    saved = json.loads((res / "t.json").read_text())
    saved["results"]["coin_flip"] = cells
    (res / "t.json").write_text(json.dumps(saved))
    study("--table_only")

    table = (res / "t.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| CoinFlip | 77.33 | 60.00 | 90.04 |"))
    assert f"**{100 * cot['accuracy']:.2f}**" in row and "ours maj@2" in table
    assert "| epoch 1 | epoch 2 |" in table and "rationale at the tail" in table
    assert "2 epochs, lr 0.0001 (constant), batch 8, full fine-tune" in table
    assert (res / "t.png").stat().st_size > 10_000
    # The constant-answer baselines are scored on the cells' test questions (the first 4 here) and kept in the file.
    base = json.loads((res / "t.json").read_text())["baselines"]["coin_flip"]
    assert base["n"] == base["limit_test"] == 4 and base["train_majority"] == "yes"
    assert f"| {100 * base['train_majority_accuracy']:.2f} (yes) | " in row


def test_constant_baselines_put_date_in_proportion(mirror):
    """Date's test answers are 31 of 111 "C" (the paper's GPT-2 vanilla 27.93 is exactly that share), while the
    training split's most common letter, "D", is 15 of 111 on test."""
    base = _reproduce().constant_baselines("date_understanding", str(mirror))
    assert (base["best_constant"], base["train_majority"], base["n"]) == ("C", "D", 111)
    assert f"{100 * base['best_constant_accuracy']:.2f}" == "27.93" and base["train_majority_accuracy"] == 15 / 111
