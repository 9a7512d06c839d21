"""`ftcot run` end to end with a tiny student: stage outputs, reuse, resume after an interruption, bad input."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.pipeline import RunConfig, run
from tests.doubles import small_run
from tests.tiny_models import make_gpt2

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("student") / "tiny")


def statuses(result) -> dict[str, str]:
    return {name: s["status"] for name, s in result.stages.items()}


def test_run_writes_a_self_describing_folder_and_reuses_stages(tmp_path, tiny, mirror):
    config = small_run(tmp_path, tiny, mirror)
    first = run(config)
    out = Path(config.output_dir)
    assert statuses(first) == {
        "teach": "ran",
        "eval_untrained/coin_flip": "ran",
        "train/coin_flip": "ran",
        "eval/coin_flip": "ran",
    }
    for rel in ("run_config.yaml", "versions.json", "stages.json", "rationales/README.md",
                "rationales/yield_report.json", "student/coin_flip/model.safetensors",
                "student/coin_flip/train_summary.json", "eval/coin_flip/results.json",
                "eval/coin_flip/completions.jsonl", "eval_untrained/coin_flip/results.json",
                "report/results.md", "report/summary.json"):  # fmt: skip
        assert (out / rel).is_file(), rel
    assert not list(out.rglob(".*.tmp-*")) and not (out / "student" / ".coin_flip.partial").exists()

    from datasets import load_dataset

    rationales = load_dataset(str(out / "rationales"), "coin_flip")
    kept = first.metrics["coin_flip"]["kept"]
    assert rationales["train"].num_rows == kept and 0 < kept <= 12
    assert rationales["test"].num_rows == 150
    assert first.metrics["coin_flip"]["n"] == 3
    completions = [json.loads(line) for line in (out / "eval/coin_flip/completions.jsonl").read_text().splitlines()]
    assert len(completions) == 3
    report = (out / "report/results.md").read_text()
    assert "| coin_flip |" in report and "77.33" in report  # the paper's GPT-2 row beside ours
    assert f"{kept}/12" in report

    # unchanged inputs: nothing is redone
    again = run(config)
    assert set(statuses(again).values()) == {"reused"}
    assert again.metrics["coin_flip"]["accuracy"] == first.metrics["coin_flip"]["accuracy"]
    for name, stage in again.stages.items():  # a reused stage keeps what it took when it ran (its stage.json)
        assert 0 < stage["original_seconds"] <= first.stages[name]["seconds"] + 0.1, name
    took = again.stages["train/coin_flip"]["original_seconds"]
    assert f"| train/coin_flip | reused | {took:.1f} |" in again.report.read_text()

    # only the evaluation settings changed: teaching and training are reused, evaluations re-run
    changed = run(small_run(tmp_path, tiny, mirror, eval_max_new_tokens=4))
    assert statuses(changed) == {
        "teach": "reused",
        "eval_untrained/coin_flip": "ran",
        "train/coin_flip": "reused",
        "eval/coin_flip": "ran",
    }
    settings = json.loads((out / "eval/coin_flip/results.json").read_text())["results"][0]["settings"]
    assert settings["max_new_tokens"] == 4


def test_every_epoch_scores_each_epoch_once_and_names_the_best(tmp_path, tiny, mirror):
    config = small_run(tmp_path, tiny, mirror, num_train_epochs=3, eval_every_epoch=True, eval_untrained=False)
    result = run(config)
    student = Path(config.output_dir) / "student" / "coin_flip"
    # The callback scored epochs 1 and 2; the eval stage scored the final model (epoch 3), not generated twice.
    records = json.loads((student / "epoch_metrics.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and all(r["metrics"]["n"] == 3 for r in records)
    assert sorted(p.name for p in (student / "epoch_completions").iterdir()) == ["epoch_1.jsonl", "epoch_2.jsonl"]
    m = result.metrics["coin_flip"]
    assert list(m["epoch_accuracy"]) == [1, 2, 3]
    assert m["epoch_accuracy"][3] == m["accuracy"]
    assert [m["epoch_accuracy"][e] for e in (1, 2)] == [r["accuracy"] for r in records]
    best = max(m["epoch_accuracy"].values())
    assert m["best_epoch_accuracy"] == best
    assert m["best_epoch"] == min(e for e, a in m["epoch_accuracy"].items() if a == best)  # ties: the earlier
    summary = json.loads((Path(config.output_dir) / "report" / "summary.json").read_text())
    assert summary["tasks"]["coin_flip"]["best_epoch"] == m["best_epoch"]
    report = (Path(config.output_dir) / "report" / "results.md").read_text()
    assert f"- coin_flip: 1: {100 * m['epoch_accuracy'][1]:.2f}, 2: " in report
    assert f"best epoch {m['best_epoch']} (" in report


def test_lora_run_evaluates_its_adapter_student(tmp_path, tiny, mirror):
    """--use_peft saves an adapter folder (no config.json); the eval stage and load_student merge it onto its base."""
    import torch

    from ftcot_hf.students.loading import load_student

    config = small_run(tmp_path, tiny, mirror, use_peft=True, lora_r=4, lora_alpha=8, eval_untrained=False)
    result = run(config)
    student = Path(config.output_dir) / "student" / "coin_flip"
    assert (student / "adapter_config.json").is_file() and not (student / "config.json").exists()
    assert result.metrics["coin_flip"]["n"] == 3
    merged, tokenizer = load_student(str(student))
    base, _ = load_student(str(tiny))
    assert not hasattr(merged, "peft_config") and tokenizer.pad_token is not None
    changed = [n for n, p in merged.named_parameters() if not torch.equal(p, base.state_dict()[n])]
    assert changed and all("lora" not in n for n in changed)  # the trained adapter is folded into base weights


def test_interrupted_run_resumes_at_the_stage_it_died_in(tmp_path, tiny, mirror, monkeypatch):
    import ftcot_hf.pipeline.stages as trainer_module  # where the train stage calls train_student

    config = small_run(tmp_path, tiny, mirror, eval_untrained=False)
    real = trainer_module.train_student

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "train_student", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    out = Path(config.output_dir)
    teach_stage = json.loads((out / "rationales/stage.json").read_text())
    assert not (out / "student" / "coin_flip").exists() and not (out / "eval").exists()

    monkeypatch.setattr(trainer_module, "train_student", real)
    resumed = run(config)
    assert statuses(resumed) == {"teach": "reused", "train/coin_flip": "ran", "eval/coin_flip": "ran"}
    assert json.loads((out / "rationales/stage.json").read_text()) == teach_stage


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--tasks", "coin_flp"], "Did you mean 'coin_flip'"),
        (["--teacher", "gpt-17"], "Unknown teacher 'gpt-17'"),
        (["--student", "/nonexistent/student"], "/nonexistent/student"),
        (["--format", "ft_cott"], "Did you mean 'ft_cot'"),
    ],
)
def test_bad_input_fails_fast_with_one_clear_line(tmp_path, mirror, capsys, flags, expected):
    out = tmp_path / "run"
    rc = main(["run", "--output_dir", str(out), "--data_dir", str(mirror), *flags])
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err and "Traceback" not in err
    assert not out.exists()  # validated before any work


def test_missing_mirror_file_names_the_file(tmp_path, tiny, capsys):
    empty = tmp_path / "mirror"
    empty.mkdir()
    rc = main(["run", "--student", str(tiny), "--output_dir", str(tmp_path / "run"), "--data_dir", str(empty),
               "--cache_dir", str(tmp_path / "c.sqlite")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and str(empty) in err and "Traceback" not in err
    assert not (tmp_path / "run" / "rationales").exists()


def test_unwritable_output_dir(tmp_path, tiny, mirror, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = main(["run", "--student", str(tiny), "--output_dir", str(blocker / "run"), "--data_dir", str(mirror)])
    err = capsys.readouterr().err
    assert rc == 2 and "Cannot write to the run folder" in err and "--output_dir" in err


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_while_saving_keeps_earlier_stages(tmp_path, tiny, mirror):
    config = small_run(tmp_path, tiny, mirror, eval_untrained=False)
    run(config)
    out = Path(config.output_dir)
    before = {p: p.read_bytes() for p in (out / "rationales").rglob("*") if p.is_file()}
    old_student = (out / "student/coin_flip/model.safetensors").read_bytes()
    # New training settings, so training re-runs; the model file (~600 KB) cannot be written under a 200 KB limit.
    args = ["run", "--student", str(tiny), "--limit_train", "12", "--limit_test", "3", "--eval_max_new_tokens", "6",
            "--output_dir", str(out), "--cache_dir", config.cache_dir, "--data_dir", str(mirror),
            "--eval_untrained", "false", "--learning_rate", "0.001", "--cpu_threads", "1"]  # fmt: skip
    code = "import sys; from ftcot_hf.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          preexec_fn=_limit_file_size(200_000), timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ftcot: error:")]
    assert len(errors) == 1 and errors[0].startswith("ftcot: error: Stage 'train'"), proc.stderr[-2000:]
    assert "earlier stages' outputs are intact" in errors[0]
    assert "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in (out / "rationales").rglob("*") if p.is_file()} == before
    assert (out / "student/coin_flip/model.safetensors").read_bytes() == old_student  # the old student survives
    assert not list(out.rglob(".*.tmp-*"))


def test_run_config_rejects_push_without_repo():
    with pytest.raises(ValueError, match="hub_dataset_id"):
        RunConfig(push_to_hub=True)
    with pytest.raises(FtcotError, match="Unknown teacher"):
        from ftcot_hf.pipeline import validate

        validate(RunConfig(teacher="nope"))


def test_run_pushes_rationales_and_student_to_the_hub(tmp_path, tiny, mirror):
    """`ftcot run --push_to_hub` against the loopback Hub: the finished stages are reused, only the push runs."""
    import yaml

    from tests.fake_hub_server import DEFAULT_TOKEN, DEFAULT_USER, FakeHub

    config = small_run(tmp_path, tiny, mirror, eval_untrained=False)
    run(config)
    dataset_id, model_id = f"{DEFAULT_USER}/ftcot-rationales", f"{DEFAULT_USER}/tiny-ftcot-{{task}}"
    args = ["run", "--student", str(tiny), "--limit_train", "12", "--limit_test", "3", "--eval_max_new_tokens", "6",
            "--eval_batch_size", "4", "--output_dir", config.output_dir, "--cache_dir", config.cache_dir,
            "--data_dir", str(mirror), "--eval_untrained", "false", "--cpu_threads", "1", "--push_to_hub",
            "--hub_dataset_id", dataset_id, "--hub_model_id", model_id, "--hub_private"]  # fmt: skip
    code = "import sys; from ftcot_hf.cli import main; sys.exit(main(sys.argv[1:]))"
    with FakeHub(tmp_path / "server") as hub:
        env = hub.client_env(tmp_path / "client_hf") | {"PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "[train/coin_flip] reusing" in proc.stderr  # nothing paid for is redone to publish
        assert f"Pushed the rationale dataset {dataset_id} to " in proc.stderr  # the user sees where it went
        assert f"Pushed the student {model_id.replace('{task}', 'coin_flip')} to " in proc.stderr
        data_files = hub.files("dataset", dataset_id)
        assert hub.repo("dataset", dataset_id).private
        assert any(name.startswith("coin_flip/train-") for name in data_files)
        card = yaml.safe_load(data_files["README.md"].decode().split("---")[1])
        assert [c["config_name"] for c in card["configs"]] == ["coin_flip"]
        model_files = hub.files("model", model_id.replace("{task}", "coin_flip"))
        assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= set(model_files)
        leftovers = [n for n in model_files if n.startswith("checkpoint-") or "optimizer" in n or ".partial" in n]
        assert not leftovers
        model_card = model_files["README.md"].decode()
        assert "model-index" in model_card and dataset_id in model_card
        written = [p for p in Path(config.output_dir).rglob("*") if p.is_file()]
        assert all(DEFAULT_TOKEN.encode() not in p.read_bytes() for p in written)
        assert DEFAULT_TOKEN not in proc.stdout + proc.stderr


def test_report_plots_accuracy_vs_degree_over_sibling_runs(tmp_path, tiny, mirror):
    sibling = tmp_path / "run-d4" / "report"
    sibling.mkdir(parents=True)
    summary = {"config": {"student": str(tiny), "format": "ft_cot", "degree": 4},
               "tasks": {"coin_flip": {"accuracy": 0.5}}}  # fmt: skip
    (sibling / "summary.json").write_text(json.dumps(summary))
    other = tmp_path / "run-other-student" / "report"
    other.mkdir(parents=True)
    (other / "summary.json").write_text(json.dumps({**summary, "config": {**summary["config"], "student": "x"}}))
    result = run(small_run(tmp_path, tiny, mirror, eval_untrained=False))
    png = Path(result.output_dir) / "report" / "accuracy_vs_degree.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy_vs_degree.png" in result.report.read_text()
    assert json.loads((Path(result.output_dir) / "report" / "summary.json").read_text())["config"]["degree"] == 1
