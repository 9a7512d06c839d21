"""Training in several processes on CPU: `accelerate launch --num_processes 2 --cpu -m ftcot_hf.cli train` is DDP
over gloo, and with the same global batch it trains as one process does (loss per step, final weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ftcot_hf.errors import FtcotError
from ftcot_hf.training.distributed import accelerate_cpu_processes
from tests.conftest import REPO_ROOT
from tests.fake_http import free_port

ACCELERATE = [str(Path(sys.executable).parent / "accelerate")]  # the console script a user types



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny GPT-2 without dropout (each process draws its own dropout masks) and 32 coin-flip records."""
    from datasets import DatasetDict
    from transformers import AutoModelForCausalLM

    from tests.doubles import coin_records
    from tests.tiny_models import make_gpt2

    root = tmp_path_factory.mktemp("ddp")
    student = make_gpt2(root / "gpt2")
    model = AutoModelForCausalLM.from_pretrained(student, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model.save_pretrained(student)
    DatasetDict({"train": coin_records(32), "test": coin_records(4, seed=1)}).save_to_disk(str(root / "data"))
    return root, student


def _train_args(root, student, out, batch: int) -> list[str]:
    # "random" sampling: one seeded permutation, dealt out in global batches whatever the process count
    # (group_by_length groups per-device batches, so its batches depend on the number of processes).
    return ["train", "--student", str(student), "--dataset", str(root / "data"), "--output_dir", str(out),
            "--per_device_train_batch_size", str(batch), "--num_train_epochs", "1", "--logging_steps", "1",
            "--train_sampling_strategy", "random", "--save_strategy", "no", "--learning_rate", "1e-3",
            "--max_length", "128", "--disable_tqdm", "true", "--seed", "0"]  # fmt: skip


def _run(command: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf"), "PYTHONPATH": str(REPO_ROOT)}  # fmt: skip
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_cpu_processes_train_as_one_process_with_the_same_global_batch(setup, tmp_path, one_torch_thread):
    from datasets import load_from_disk

    from ftcot_hf.students.loading import load_student
    from ftcot_hf.training import FineTuneCoTConfig, train_student

    root, student = setup
    two, one = tmp_path / "two", tmp_path / "one"
    port = str(free_port())
    launch = [*ACCELERATE, "launch", "--num_processes", "2", "--cpu", "--num_machines", "1", "--mixed_precision",
              "no", "--dynamo_backend", "no", "--main_process_port", port, "-m", "ftcot_hf.cli"]  # fmt: skip
    done = _run(launch + _train_args(root, student, two, batch=4), tmp_path)
    # The one-process baseline, the same settings in this process (an interpreter start costs more than training).
    config = FineTuneCoTConfig(
        output_dir=str(one), per_device_train_batch_size=8, num_train_epochs=1, logging_steps=1,
        train_sampling_strategy="random", save_strategy="no", learning_rate=1e-3, max_length=128,
        disable_tqdm=True, seed=0,
    )  # fmt: skip
    train_student(config, str(student), load_from_disk(str(root / "data"))["train"])

    # 32 rows in global batches of 8: 4 steps. One process with batch 4 (accelerate's own --cpu behaviour) does 8.
    summaries = [json.loads((d / "train_summary.json").read_text()) for d in (two, one)]
    assert [s["global_step"] for s in summaries] == [4, 4]
    assert done.stdout.count("Trained 4 steps") == 1  # one summary, printed by the main process only
    losses = [[r["loss"] for r in json.loads((d / "loss_log.json").read_text())] for d in (two, one)]
    assert len(losses[0]) == 4 and losses[0][-1] < losses[0][0]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)

    model_two, tok = load_student(str(two))
    model_one, _ = load_student(str(one))
    start, _ = load_student(str(student))
    weights = zip(model_two.state_dict().items(), model_one.state_dict().values(), start.state_dict().values(),
                  strict=True)  # fmt: skip
    changed = 0
    for (name, a), b, s in weights:
        assert torch.allclose(a, b, atol=1e-5), name
        changed += not torch.equal(a, s)
    assert changed  # it trained
    ids = tok("A coin is heads up. ###", return_tensors="pt")
    assert model_two.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3


def test_the_accelerate_cpu_launch_is_recognised_from_its_command_line():
    env = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    parent = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--num_processes", "3", "--cpu", "-m", "x"]
    assert accelerate_cpu_processes(env, parent) == 3
    assert accelerate_cpu_processes(env, [*parent[:3], "--num_processes=2", "--cpu", "-m", "x"]) == 2
    assert accelerate_cpu_processes({**env, "WORLD_SIZE": "2"}, parent) is None  # already one of a group
    assert accelerate_cpu_processes({"ACCELERATE_USE_CPU": "True"}, parent) is None  # one process asked for
    assert accelerate_cpu_processes(env, ["/usr/bin/python", "train.py"]) is None  # not started by accelerate
    with pytest.raises(FtcotError, match="started one process"):  # N only in accelerate's config file
        accelerate_cpu_processes(env, ["/venv/bin/accelerate", "launch", "--cpu", "-m", "x"])
