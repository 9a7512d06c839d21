"""Bad values are refused where the config is built, with one line naming the field and what to pass instead."""

from __future__ import annotations

import pytest

from ftcot_hf import load_task
from ftcot_hf.errors import FtcotError, UnknownTaskError
from ftcot_hf.students.formats import UnknownFormatError
from ftcot_hf.tasks import get_task
from ftcot_hf.teach import TeachConfig
from ftcot_hf.teach.augment import RationaleAugmenter
from ftcot_hf.training.config import FineTuneCoTConfig
from tests.doubles import StubTeacher, exits_2_in_one_line


# -- TeachConfig ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [0, -5])
def test_teach_limit_must_be_positive(limit, capsys):
    with pytest.raises(FtcotError, match=rf"--limit must be a positive number of questions \(got {limit}\)"):
        TeachConfig(limit=limit)
    exits_2_in_one_line(["teach", "--limit", str(limit)], capsys, "--limit must be a positive number")
    assert TeachConfig(limit=1).limit == 1 and TeachConfig().limit is None


@pytest.mark.parametrize("temperature", [float("nan"), -1.0, float("inf")])
def test_teach_temperature_must_be_a_finite_non_negative_number(temperature, capsys):
    with pytest.raises(FtcotError, match=r"--temperature must be a number >= 0"):
        TeachConfig(temperature=temperature)
    exits_2_in_one_line(["teach", "--temperature", str(temperature)], capsys, "--temperature must be a number >= 0")
    assert TeachConfig(temperature=0.0).temperature == 0.0


@pytest.mark.parametrize("degree", [0, -1, 65])
def test_teach_degree_is_between_1_and_64(degree, capsys):
    with pytest.raises(FtcotError, match=rf"--degree \(D\) must be between 1 and 64, got {degree}"):
        TeachConfig(degree=degree)
    exits_2_in_one_line(["teach", "--degree", str(degree)], capsys, "must be between 1 and 64")
    assert TeachConfig(degree=64, temperature=0.7).degree == 64


def test_teach_keep_and_sampled_degree_need_sensible_values():
    with pytest.raises(FtcotError, match=r"--keep must be 'correct', 'all' or 'pass_rate'"):
        TeachConfig(keep="some")
    with pytest.raises(FtcotError, match=r"--degree 4 with --temperature 0"):
        TeachConfig(degree=4, temperature=0)
    with pytest.raises(FtcotError, match=r"--lock_timeout must be >= 0"):
        TeachConfig(lock_timeout=-1)


@pytest.mark.parametrize("temperature", [float("nan"), -0.5])
def test_augmenter_temperature_must_be_a_finite_non_negative_number(temperature):
    with pytest.raises(ValueError, match=r"temperature must be a number >= 0"):
        RationaleAugmenter(StubTeacher(), "coin_flip", temperature=temperature)


# -- FineTuneCoTConfig ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"learning_rate": -1}, r"learning_rate must be > 0 \(got -1\)"),
        ({"learning_rate": 0}, r"learning_rate must be > 0 \(got 0\)"),
        ({"learning_rate": float("nan")}, r"learning_rate must be > 0 \(got nan\)"),
        ({"num_train_epochs": 0}, r"num_train_epochs must be > 0 \(got 0\)"),
        ({"num_train_epochs": -2.0}, r"num_train_epochs must be > 0 \(got -2.0\)"),
    ],
)
def test_finetunecot_config_refuses_a_learning_rate_or_epochs_that_train_nothing(kwargs, needle, tmp_path):
    with pytest.raises(ValueError, match=needle):
        FineTuneCoTConfig(output_dir=str(tmp_path), **kwargs)


def test_finetunecot_config_zero_epochs_is_fine_when_max_steps_decides(tmp_path):
    assert FineTuneCoTConfig(output_dir=str(tmp_path), num_train_epochs=0, max_steps=3).max_steps == 3


def test_finetunecot_config_unknown_format_fails_at_construction(tmp_path, capsys):
    with pytest.raises(UnknownFormatError, match=r"Unknown format 'ft_cott'\. Did you mean 'ft_cot'\?"):
        FineTuneCoTConfig(output_dir=str(tmp_path), format="ft_cott")
    assert FineTuneCoTConfig(output_dir=str(tmp_path), format="vanilla").format == "vanilla"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--num_train_epochs", "0"], "num_train_epochs must be > 0"),
        (["--learning_rate", "-1"], "learning_rate must be > 0"),
        (["--format", "nope"], "Unknown format 'nope'"),
    ],
)
def test_ftcot_train_bad_values_areexits_2_in_one_line(flags, needle, tmp_path, capsys):
    exits_2_in_one_line(["train", "--output_dir", str(tmp_path / "s"), "--student", "x", *flags], capsys, needle)


# -- n-shot variants ------------------------------------------------------------------------------------------------
def test_an_nshot_variant_larger_than_the_train_split_names_the_train_size(mirror, tmp_path):
    with pytest.raises(UnknownTaskError, match=r"'9999shot'.*9999 training questions.*coin_flip has 350.*'350shot'"):
        load_task("coin_flip", "9999shot", data_dir=mirror, cache_dir=tmp_path)
    coin_flip = get_task("coin_flip")
    with pytest.raises(UnknownTaskError, match="has 350"):
        coin_flip.split_sizes("351shot")
    assert coin_flip.split_sizes("350shot") == (350, 150) and coin_flip.split_sizes("8shot") == (8, 150)


def test_an_nshot_variant_larger_than_the_train_split_is_exit_2_in_ftcot_show(mirror, capsys):
    exits_2_in_one_line(["show", "coin_flip", "--variant", "9999shot", "--data-dir", str(mirror)], capsys, "has 350")


# -- the Python API (issue 31 item 6) ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "imports",
    [
        "from ftcot_hf import RationaleAugmenter, augment",
        "import ftcot_hf.teach\nfrom ftcot_hf import augment",
        "import ftcot_hf.teach.augment\nimport ftcot_hf\naugment = ftcot_hf.augment",
        "from ftcot_hf import augment",
    ],
)
def test_the_exported_augment_is_the_function_whatever_was_imported_first(imports):
    """Importing the submodule ftcot_hf.augment (now ftcot_hf.teach.augment) used to bind the module over the exported
    function."""
    import subprocess
    import sys

    code = f"{imports}\nimport inspect\nassert inspect.isfunction(augment), augment\nprint(augment.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "augment", proc.stderr[-600:]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"degree": "4"}, r"TeachConfig\.degree \(--degree\) must be an integer, got '4' \(str\)"),
        ({"tasks": None}, r"TeachConfig\.tasks \(--tasks\) must be a list of strings, got None"),
        ({"tasks": [5]}, r"TeachConfig\.tasks .* got \[5\]"),
        ({"temperature": "hot"}, r"TeachConfig\.temperature .* must be a number or null, got 'hot'"),
        ({"teacher_kwargs": [1, 2]}, r"TeachConfig\.teacher_kwargs .* got \[1, 2\]"),
    ],
)
def test_teach_config_of_the_wrong_type_is_named_at_construction(kwargs, needle):
    with pytest.raises(FtcotError, match=needle):
        TeachConfig(**kwargs)
    assert TeachConfig(temperature=1, degree=2).temperature == 1  # an int is a number


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"resample_until": -1}, r"--resample_until must be a number of correct rationales >= 1"),
        ({"max_extra_samples": -5}, r"--max_extra_samples must be >= 0"),
        ({"resample_until": 2}, r"--resample_until 2 samples more only within --max_extra_samples"),
    ],
)
def test_teach_resampling_values_that_would_do_nothing_are_refused(kwargs, needle):
    with pytest.raises(FtcotError, match=needle):
        TeachConfig(**kwargs)
    assert TeachConfig(resample_until=2, max_extra_samples=4).resample_until == 2


def test_augmenter_refuses_negative_resampling_values():
    with pytest.raises(ValueError, match=r"resample_until must be >= 1"):
        RationaleAugmenter(StubTeacher(), "coin_flip", resample_until=-1)
    with pytest.raises(ValueError, match=r"max_extra_samples must be >= 0"):
        RationaleAugmenter(StubTeacher(), "coin_flip", max_extra_samples=-5)


def test_build_teacher_takes_a_teacher_name_and_names_what_it_cannot_take(mirror, monkeypatch):
    from ftcot_hf import build_teacher

    monkeypatch.setenv("FTCOT_DATA_MIRROR", str(mirror))
    teacher, trigger = build_teacher("text-davinci-002", ["coin_flip"])
    assert teacher.backend == "replay" and trigger == "kojima"
    with pytest.raises(FtcotError, match=r"build_teacher takes a TeachConfig \(or a teacher name"):
        build_teacher(5)
    with pytest.raises(FtcotError, match=r"Unknown teacher 'gpt-17'"):
        build_teacher("gpt-17")
    config = TeachConfig(teacher="openai", model="m", base_url=["http://127.0.0.1:9/v1"],
                         teacher_kwargs={"timeout": "abc"})  # fmt: skip
    with pytest.raises(FtcotError, match=r"--teacher_kwargs of the openai teacher: timeout must be a number"):
        build_teacher(config)
