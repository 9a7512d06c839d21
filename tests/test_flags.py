"""One set of flag names across the commands, and mistakes in flags and YAML keys answered in our words (issue 32,
items 2 and 3): each command takes the names the others use for the same field, a typo gets "did you mean", an
abbreviation is not silently taken for a longer flag, and each --help opens with what the command acts on."""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.cli import EvalConfig
from ftcot_hf.pipeline.run import parse_run_args
from ftcot_hf.teach import TeachConfig
from ftcot_hf.utils.parser import command_parser


def parse_teach(argv: list[str]) -> TeachConfig:
    (config,) = command_parser((TeachConfig,), argv, prog="ftcot teach").parse(argv)
    return config


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # --help exits itself
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


# -- item 2: one set of names ---------------------------------------------------------------------------------------
def test_teach_takes_the_runs_names():
    config = parse_teach(["--teacher", "openai", "--teacher_model", "m", "--limit_train", "3", "--task", "svamp"])
    assert (config.model, config.limit, config.tasks) == ("m", 3, ["svamp"])


def test_run_takes_the_commands_own_names():
    config = parse_run_args(["--model", "m", "--max_new_tokens", "9", "--untrained", "false", "--private",
                             "--task", "svamp"])  # fmt: skip
    assert (config.teacher_model, config.eval_max_new_tokens, config.eval_untrained) == ("m", 9, False)
    assert (config.hub_private, config.tasks) == (True, ["svamp"])


def test_eval_takes_the_runs_and_trains_names():
    argv = ["--student", "s", "--limit_test", "4", "--eval_batch_size", "2", "--tasks", "svamp"]
    (config,) = command_parser((EvalConfig,), argv, prog="ftcot eval").parse(argv)
    assert (config.model, config.limit, config.batch_size, config.task) == ("s", 4, 2, ["svamp"])


def test_a_name_two_fields_could_mean_is_refused_naming_both():
    with pytest.raises(FtcotError, match="--limit could be --limit_test or --limit_train"):
        parse_run_args(["--limit", "3"])


def test_the_aliases_work_as_yaml_keys_too(tmp_path):
    path = tmp_path / "teach.yaml"
    path.write_text(yaml.safe_dump({"teacher": "openai", "teacher_model": "m", "limit_train": 2}))
    config = parse_teach(["--config", str(path)])
    assert (config.model, config.limit) == ("m", 2)


# -- item 3: mistakes answered in our words -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["teach", "--modle", "m"], "unknown option --modle; did you mean --mode or --model?"),
     (["run", "--teacher_modle", "m"], "did you mean --teacher_model"),
     (["teach", "coin_flip"], "unexpected argument 'coin_flip'")],
)  # fmt: skip
def test_an_unknown_flag_is_one_line_with_the_closest_names(argv, expected):
    rc, _, err = run_cli(argv)
    assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert "HfArgumentParser" not in err and "fail_with_unknown_args" not in err


def test_an_abbreviation_is_not_taken_for_a_longer_flag():
    with pytest.raises(FtcotError, match="unknown option --num_train_epoch; did you mean --num_train_epochs"):
        parse_run_args(["--num_train_epoch", "2"])
    with pytest.raises(FtcotError, match="did you mean --degree"):
        parse_teach(["--deg", "2"])


@pytest.mark.parametrize(
    ("command", "content", "expected"),
    [("teach", {"degre": 2}, "unknown key `degre`; did you mean `degree`?"),
     ("run", {"lerning_rate": 1.0}, "unknown key `lerning_rate`; did you mean `learning_rate`"),
     ("run", {"teach": {"modle": "m"}}, "unknown key `teach.modle`; did you mean `model`?"),
     ("run", {"teach": {"learning_rate": 1.0}}, "`teach.learning_rate`; it belongs in the train: section")],
)  # fmt: skip
def test_an_unknown_yaml_key_is_a_short_line_with_the_closest_names(tmp_path, command, content, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(content))
    rc, _, err = run_cli([command, "--config", str(path)])
    assert rc == 2 and expected in err and str(path) in err, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 300, err  # not every key of the command listed


@pytest.mark.parametrize(
    ("command", "first"),
    [("train", ["--student", "--rationales", "--task", "--format", "--output_dir"]),
     ("teach", ["--tasks", "--dataset", "--teacher", "--model", "--base_url", "--output_dir"]),
     ("eval", ["--model", "--task", "--rationales", "--format"]),
     ("run", ["--tasks", "--dataset", "--student", "--teacher", "--teacher_model", "--base_url"])],
)  # fmt: skip
def test_help_opens_with_what_the_command_acts_on(command, first):
    rc, out, _ = run_cli([command, "--help"])
    assert rc == 0
    screen = out.splitlines()[:40]
    options = [line.split()[0].rstrip(",") for line in screen if line.startswith("  --")]
    assert options[2 : 2 + len(first)] == first, options  # after --config and --help-all
    assert any(line.startswith("What it acts on") for line in screen)
