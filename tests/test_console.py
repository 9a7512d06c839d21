"""A quiet console: the libraries' bars and info logs off inside our stages (restored after), one bar per
evaluation with rows as the unit, no cursor-up escapes."""

from __future__ import annotations

import importlib
import logging
import re

import pytest

from ftcot_hf.utils.console import KEEP_ENV, progress_bar, quiet_libraries


def _modules() -> tuple:
    # By module path: `import datasets.utils.tqdm as x` gives the class the package re-exports under that name.
    names = (
        "datasets.utils.logging",
        "datasets.utils.tqdm",
        "huggingface_hub.utils.tqdm",
        "transformers.utils.logging",
    )
    return tuple(importlib.import_module(n) for n in names)


def _state() -> dict[str, object]:
    ds_logging, ds_tqdm, hub_tqdm, tf_logging = _modules()

    return {
        "datasets_bars": not ds_tqdm.are_progress_bars_disabled(),
        "datasets_level": ds_logging.get_verbosity(),
        "transformers_bars": tf_logging.is_progress_bar_enabled(),
        "transformers_level": tf_logging.get_verbosity(),
        "hub_bars": not hub_tqdm.are_progress_bars_disabled(),
        "hub_states": dict(hub_tqdm.progress_bar_states),
    }


@pytest.fixture
def noisy(monkeypatch):
    """Libraries as a user may have set them: bars on, INFO logs, one hub group switched off by name."""
    ds_logging, ds_tqdm, hub_tqdm, tf_logging = _modules()

    for name in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "DATASETS_VERBOSITY", "TRANSFORMERS_VERBOSITY",
                 "HF_HUB_DISABLE_PROGRESS_BARS", KEEP_ENV):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    before = _state()
    ds_tqdm.enable_progress_bars()
    tf_logging.enable_progress_bar()
    hub_tqdm.disable_progress_bars("huggingface_hub.some_group")
    ds_logging.set_verbosity(logging.INFO)
    tf_logging.set_verbosity(logging.INFO)
    yield _state()
    ds_logging.set_verbosity(before["datasets_level"])
    tf_logging.set_verbosity(before["transformers_level"])
    hub_tqdm.progress_bar_states.clear()
    hub_tqdm.progress_bar_states.update(before["hub_states"])
    (ds_tqdm.enable_progress_bars if before["datasets_bars"] else ds_tqdm.disable_progress_bars)()
    tf_logging._tqdm_active = before["transformers_bars"]


def test_quiet_libraries_turns_bars_and_info_logs_off_and_restores_them(noisy):
    assert noisy["datasets_bars"] and noisy["transformers_bars"] and noisy["hub_bars"]
    with quiet_libraries():
        inside = _state()
        with quiet_libraries():  # nested: the inner exit must not switch anything back on
            pass
        assert _state() == inside
    assert inside["datasets_bars"] is False and inside["transformers_bars"] is False and inside["hub_bars"] is False
    assert inside["datasets_level"] == logging.WARNING and inside["transformers_level"] == logging.WARNING
    assert _state() == noisy  # the named hub group is off again, the rest on
    with pytest.raises(RuntimeError), quiet_libraries():
        raise RuntimeError("a stage failing")
    assert _state() == noisy


def test_quiet_libraries_never_lowers_a_level_and_leaves_env_pinned_settings(noisy, monkeypatch):
    ds_logging, _, _, tf_logging = _modules()

    tf_logging.set_verbosity(logging.ERROR)
    with quiet_libraries():
        assert tf_logging.get_verbosity() == logging.ERROR  # a quieter setting stays
    monkeypatch.setenv("DATASETS_VERBOSITY", "info")  # the user asked for datasets' info logs
    with quiet_libraries():
        assert ds_logging.get_verbosity() == logging.INFO
    before = _state()
    monkeypatch.setenv(KEEP_ENV, "1")
    with quiet_libraries():
        assert _state() == before


def test_our_bar_averages_its_rate_since_the_start():
    bar = progress_bar(150, "eval coin_flip")
    try:
        # The default moving average turns the first burst of finished rows (after a long first batch) into an ETA
        # of hours; the mean rate since the start does not.
        assert bar.smoothing == 0 and bar.total == 150 and bar.unit == "row" and bar.leave
    finally:
        bar.close()
    assert progress_bar(0, "nothing") is None and progress_bar(5, "off", enabled=False) is None


def test_ftcot_eval_prints_one_bar_and_no_cursor_up_escapes(tmp_path, mirror, monkeypatch, capfd, tiny_gpt2):
    import datasets.config

    from ftcot_hf.evaluation.cli import cli_main

    # A fresh datasets cache: the task's splits are built here, which draws datasets' bars unless they are off.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.delenv(KEEP_ENV, raising=False)
    capfd.readouterr()
    args = ["--model", str(tiny_gpt2), "--task", "coin_flip", "--limit", "6", "--max_new_tokens", "3",
            "--batch_size", "4", "--sc", "2", "--threads", "1", "--data_dir", str(mirror),
            "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert cli_main(args) == 0
    err = capfd.readouterr().err
    assert "\x1b[A" not in err
    assert "Generating" not in err and "Loading weights" not in err and "Map" not in err
    frames = re.findall(r"(?:^|[\r\n])([^\r\n|]*?): *\d+%\|[^|\r\n]*\| *(\d+)/(\d+)", err)
    assert frames, err
    # One bar: one description, one total (6 greedy rows + 6 x 2 samples), drawn on one line, ending full.
    assert {f[0] for f in frames} == {"eval coin_flip"} and {f[2] for f in frames} == {"18"}
    assert frames[-1][1] == "18"
    assert len([line for line in err.split("\n") if "%|" in line]) == 1


def test_ftcot_teach_shows_no_library_bars(tmp_path, mirror, monkeypatch, capfd):
    import datasets.config

    from ftcot_hf.teach import cli_main

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")  # splits built here
    monkeypatch.delenv(KEEP_ENV, raising=False)
    capfd.readouterr()
    args = ["--tasks", "coin_flip", "--limit", "5", "--data_dir", str(mirror), "--output_dir", str(tmp_path / "out"),
            "--cache_dir", str(tmp_path / "teacher.sqlite")]  # fmt: skip
    assert cli_main(args) == 0
    err = capfd.readouterr().err
    for noise in ("Generating", "Map", "Filter", "Creating parquet", "\x1b[A"):
        assert noise not in err, (noise, err)
    assert (tmp_path / "out" / "README.md").is_file()


def test_one_bar_covers_both_stages_and_the_samples_of_an_evaluation(capfd, tiny_gpt2, one_torch_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcot_hf.evaluation import evaluate_student

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_gpt2), AutoTokenizer.from_pretrained(tiny_gpt2)
    records = [{"question": f"A coin is heads up. Flip {i}. Is it heads up?", "answer": "no"} for i in range(3)]
    capfd.readouterr()
    evaluate_student(model, tok, records, task="coin_flip", format="zero_shot_cot", sc=2, max_new_tokens=2,
                     batch_size=4, progress="eval coin_flip (untrained)")  # fmt: skip
    err = capfd.readouterr().err
    frames = re.findall(r"(?:^|[\r\n])([^\r\n|]*?): *\d+%\|[^|\r\n]*\| *(\d+)/(\d+)", err)
    # 3 questions x (greedy + 2 samples) x (rationale + answer) = 18 rows, one labelled bar, one line
    assert {(f[0], f[2]) for f in frames} == {("eval coin_flip (untrained)", "18")} and frames[-1][1] == "18"
    assert len([line for line in err.split("\n") if "%|" in line]) == 1 and "\x1b[A" not in err
