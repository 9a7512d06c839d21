"""The Hub-ready export loads with plain `load_dataset`; the `ftcot` CLI prints what it says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import DatasetCard, DatasetCardData

from ftcot_hf.cli import main
from tests.conftest import REPO_ROOT


def test_export_loads_with_load_dataset_and_equals_load_task(mirror, built, tmp_path, monkeypatch):
    out = tmp_path / "ftcot-tasks"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "dataset_scripts/export_tasks.py"), str(out),
         "--tasks", "coin_flip", "multiarith", "aqua", "--variants", "default", "template",
         "--data-dir", str(mirror)],
        check=True, capture_output=True, text=True, env={**__import__("os").environ, "HF_HOME": str(tmp_path / "hf")},
    )  # fmt: skip
    card = DatasetCard.load(out / "README.md")
    configs = {c["config_name"]: c for c in card.data.to_dict()["configs"]}
    assert set(configs) == {"coin_flip", "multiarith", "multiarith__template", "aqua"}
    assert [f["split"] for f in configs["aqua"]["data_files"]] == ["test"]
    assert "kojima-takeshi188/zero_shot_cot" in card.text and "sha256" in card.text
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    for name, variant in [("coin_flip", "default"), ("multiarith", "template")]:
        cname = name if variant == "default" else f"{name}__{variant}"
        loaded = load_dataset(str(out), cname)
        expected = built(name, variant)
        for split in ("train", "test"):
            assert loaded[split].to_list() == expected[split].to_list()
    aqua = load_dataset(str(out), "aqua")
    assert aqua["test"].features["choices"] == built("aqua")["test"].features["choices"]
    # The YAML header is valid for the Hub (round-trips through DatasetCardData).
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert DatasetCardData(**header).to_dict() == header
    assert header["pretty_name"] == "Fine-tune-CoT tasks"
    assert header["license"] == ["apache-2.0", "other"]  # coin_flip and multiarith state no licence


def test_two_folders_of_the_same_name_load_their_own_rows(tmp_path):
    """datasets keys its cache of a local folder on the folder's name + the README's data_files, not the contents:
    two runs' `rationales/` folders with fixed file names would share one entry (the second loads the first's rows).
    """
    from datasets import Dataset, DatasetDict

    from ftcot_hf.utils.export import write_dataset_repo

    cache = str(tmp_path / "cache")
    for run, n in (("run_a", 3), ("run_b", 5)):
        rows = DatasetDict({"train": Dataset.from_dict({"question": [f"{run} q{i}" for i in range(n)]})})
        write_dataset_repo(tmp_path / run / "rationales", {"coin_flip": rows}, template="tasks_dataset_card.md",
                           card_data={"pretty_name": "t"}, tasks_table="", sources="", citation="")  # fmt: skip
        loaded = load_dataset(str(tmp_path / run / "rationales"), "coin_flip", split="train", cache_dir=cache)
        assert loaded["question"] == [f"{run} q{i}" for i in range(n)]
    # Re-writing a folder replaces its files instead of leaving the old ones beside the new.
    rows = DatasetDict({"train": Dataset.from_dict({"question": ["only"]})})
    write_dataset_repo(tmp_path / "run_a" / "rationales", {"coin_flip": rows}, template="tasks_dataset_card.md",
                       card_data={"pretty_name": "t"}, tasks_table="", sources="", citation="")  # fmt: skip
    assert len(list((tmp_path / "run_a" / "rationales" / "coin_flip").glob("*.parquet"))) == 1
    loaded = load_dataset(str(tmp_path / "run_a" / "rationales"), "coin_flip", split="train", cache_dir=cache)
    assert loaded["question"] == ["only"]


def test_cli_tasks_lists_all_twelve_with_spec_sizes(capsys):
    assert main(["tasks", "--json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 12
    assert (rows["coin_flip"]["train"], rows["coin_flip"]["test"]) == ("350", 150)
    assert (rows["gsm8k"]["train"], rows["gsm8k"]["test"], rows["gsm8k"]["size"]) == ("7473", 1319, 8792)
    assert rows["aqua"]["train"] == "10000*" and rows["aqua"]["size"] == 97721
    assert rows["commonsense_qa"]["license"] == "MIT"
    assert main(["tasks"]) == 0
    table = capsys.readouterr().out
    assert "tracking_shuffled_objects" in table and "choice (A-C)" in table


def test_cli_show_prints_records(mirror, capsys):
    assert main(["show", "coin_flip", "-n", "2", "--data-dir", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert "coin_flip [default] test: 150 records" in out
    assert out.count("  Q: A coin is heads up.") == 2


@pytest.mark.parametrize(
    "argv,needle",
    [(["show", "coin_fip"], "Did you mean 'coin_flip'"), (["show", "aqua", "--split", "train"], "no 'train' split")],
)
def test_cli_errors_are_one_line_without_traceback(argv, needle, mirror, capsys):
    assert main([*argv, "--data-dir", str(mirror)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_console_script_runs():
    exe = REPO_ROOT / ".venv/bin/ftcot"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ftcot_hf.cli"]
    result = subprocess.run([*cmd, "tasks"], capture_output=True, text=True, check=True)
    assert "strategy_qa" in result.stdout


@pytest.mark.parametrize(
    "content,message",
    [(None, "--config {path}: no such file."), ("tasks: [coin_flip\n", "is not valid YAML (line 2")],
)
def test_a_bad_config_file_is_one_line(tmp_path, capsys, content, message):
    from ftcot_hf.cli import main

    path = tmp_path / "run.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["teach", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(path=path) in err and len(err.splitlines()) == 1


def test_verbose_flag_before_the_command(tmp_path, mirror, capsys):
    from ftcot_hf.cli import main

    out = tmp_path / "out"
    assert main(["-v", "teach", "--tasks", "coin_flip", "--limit", "2", "--data_dir", str(mirror),
                 "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out)]) == 0  # fmt: skip
    assert (out / "README.md").is_file()


def test_ctrl_c_says_how_to_resume_and_exits_130(monkeypatch, capsys):
    import ftcot_hf.teach.cli as teach_module
    from ftcot_hf.cli import main

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(teach_module, "cli_main", interrupted)
    assert main(["teach"]) == 130
    err = capsys.readouterr().err
    assert "re-run" not in err and "run the same `ftcot teach` command again to resume" in err
    assert "Traceback" not in err
