"""`ftcot run --validation_size/--select_epoch`: an epoch selected on held-out train questions, not on the test set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.pipeline import RunConfig, run
from ftcot_hf.pipeline.stages import train_inputs
from tests.doubles import small_run


def small(tmp: Path, tiny: Path, mirror: Path, **overrides) -> RunConfig:
    return small_run(tmp, tiny, mirror, eval_untrained=False, **overrides)


def test_held_out_questions_are_not_trained_on_and_select_an_epoch(tmp_path, tiny_gpt2, mirror, monkeypatch):
    import ftcot_hf.pipeline.stages as trainer_module  # where the train stage calls train_student

    trained_on = []
    real = trainer_module.train_student

    def spy(config, model, train, *args, **kwargs):
        trained_on.extend(train["sample_index"])
        return real(config, model, train, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_student", spy)
    config = small(tmp_path, tiny_gpt2, mirror, num_train_epochs=2, validation_size=3, select_epoch="test")
    result = run(config)
    out = Path(config.output_dir)
    student = out / "student" / "coin_flip"
    split = json.loads((student / "validation_split.json").read_text())
    held = split["held_out_sample_indices"]
    assert len(held) == split["validation_questions"] == 3 and split["seed"] == config.seed
    assert trained_on and not set(held) & set(trained_on)  # no row of a held-out question was trained on
    assert len(set(trained_on)) == split["train_questions"] == split["questions"] - 3

    # Validation scored after every epoch, the last included; the test split after epoch 1 (the eval stage: 2).
    records = json.loads((student / "epoch_metrics_validation.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and all(r["metrics"]["n"] == 3 for r in records)
    assert [r["epoch"] for r in json.loads((student / "epoch_metrics.json").read_text())] == [1]
    m = result.metrics["coin_flip"]
    assert m["validation_accuracy"] == {r["epoch"]: r["accuracy"] for r in records}
    best = max(m["validation_accuracy"].values())
    assert m["validation_epoch"] == min(e for e, a in m["validation_accuracy"].items() if a == best)
    assert m["validation_epoch_test_accuracy"] == m["epoch_accuracy"][m["validation_epoch"]]
    assert m["epoch_accuracy"][2] == m["accuracy"]

    report = (out / "report" / "results.md").read_text()
    assert "Epoch selected on validation" in report
    assert (f"- coin_flip: 3 of the {split['questions']} train questions with rationales held out (seed 42; "
            "sample_index "
            f"{', '.join(map(str, held))};") in report  # fmt: skip
    assert (f"selected epoch {m['validation_epoch']} (validation {100 * m['validation_epoch_accuracy']:.2f}): "
            f"test {100 * m['validation_epoch_test_accuracy']:.2f}") in report  # fmt: skip
    assert "the best epoch is selected on the test set (the paper's protocol; optimistic)" in report  # asked: test
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["tasks"]["coin_flip"]["validation_split"]["held_out_sample_indices"] == held
    assert summary["config"]["validation_size"] == 3 and summary["config"]["select_epoch"] == "test"


def test_validation_selection_does_not_show_the_test_selected_epoch(tmp_path, tiny_gpt2, mirror):
    config = small(tmp_path, tiny_gpt2, mirror, num_train_epochs=1, validation_size=0.25)
    result = run(config)
    summary = json.loads((Path(config.output_dir) / "report" / "summary.json").read_text())
    assert summary["config"]["select_epoch"] == "validation"  # a validation size alone selects on it
    assert config.select_epoch is None  # the run fills in a copy: the config given is left as it was
    m = result.metrics["coin_flip"]
    assert list(m["validation_accuracy"]) == [1] and m["validation_epoch"] == 1 and "best_epoch" not in m
    report = (Path(config.output_dir) / "report" / "results.md").read_text()
    assert "selected epoch 1 (validation" in report and "selected on the test set" not in report


def test_defaults_paper_tasks_unchanged_user_datasets_hold_out_ten_percent():
    paper = RunConfig().with_selection(builtin=True)
    assert (paper.select_epoch, paper.validation_size, paper.scores_every_epoch) == ("last", 0, False)
    legacy = RunConfig(eval_every_epoch=True).with_selection(builtin=True)
    assert legacy.select_epoch == "test" and not legacy.validation_size  # today's --eval_every_epoch report
    custom = RunConfig().with_selection(builtin=False)
    assert (custom.select_epoch, custom.validation_size, custom.scores_every_epoch) == ("validation", 0.1, True)
    assert custom.validation_count(35) == 4 and custom.validation_count(3) == 1
    off = RunConfig(validation_size=0).with_selection(builtin=False)
    assert (off.select_epoch, off.validation_size) == ("last", 0)


def test_the_new_fields_change_the_train_fingerprint():
    base = RunConfig().with_selection(builtin=True)
    held = RunConfig(validation_size=5).with_selection(builtin=True)
    other_size = RunConfig(validation_size=6).with_selection(builtin=True)
    on_test = RunConfig(select_epoch="test").with_selection(builtin=True)
    inputs = [json.dumps(train_inputs(c), sort_keys=True, default=str) for c in (base, held, other_size, on_test)]
    assert len(set(inputs)) == 4
    assert "selection" not in train_inputs(base)  # the default run's fingerprint is today's


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"validation_size": 12, "limit_train": 12}, "leaves no training question of the 12 taught"),
        ({"validation_size": 20, "limit_train": 12}, "is more than the 12 train question(s) taught"),
        ({"validation_size": 0.5, "limit_train": 1}, "leaves no training question"),
        ({"validation_size": 2.5}, "give a count of train questions (N >= 1) or a fraction"),
        ({"validation_size": -1}, "give a count of train questions"),
        ({"validation_size": 0, "select_epoch": "validation"}, "--select_epoch validation needs validation"),
        ({"select_epoch": "best"}, "--select_epoch must be one of last, validation, test"),
    ],
)
def test_bad_validation_sizes_are_one_clear_error(values, expected):
    with pytest.raises(FtcotError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**values)


def test_a_count_over_the_train_split_fails_before_any_work(tmp_path, mirror, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--output_dir", str(out), "--data_dir", str(mirror), "--validation_size", "400"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "--validation_size 400 is more than the 350 train question(s) of coin_flip's train split" in err
    assert not out.exists()


def test_ftcot_run_validation_flags_as_typed(tmp_path, tiny_gpt2, mirror, capsys):
    out = tmp_path / "run"
    assert main(["run", "--validation_size", "0.3", "--select_epoch", "validation", "--student", str(tiny_gpt2),
                 "--limit_train", "10", "--limit_test", "3", "--num_train_epochs", "2", "--eval_untrained", "false",
                 "--eval_max_new_tokens", "4", "--max_length", "128", "--cpu_threads", "1", "--data_dir", str(mirror),
                 "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out)]) == 0  # fmt: skip
    assert "selected on validation: test" in capsys.readouterr().out
    split = json.loads((out / "student" / "coin_flip" / "validation_split.json").read_text())
    assert split["validation_questions"] == len(split["held_out_sample_indices"]) >= 1
    assert "Epoch selected on validation" in (out / "report" / "results.md").read_text()
