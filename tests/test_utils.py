"""ftcot_hf.utils: atomic folders, the HF home folder read at call time, one percentage format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftcot_hf.utils import atomic_dir, hf_home, pct, remove_stale_tmp

DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: no such process


# -- atomic_dir -----------------------------------------------------------------------------------------------------
def test_atomic_dir_leaves_no_half_folder_and_cleans_killed_leftovers(tmp_path):
    dest = tmp_path / "students" / "x-123"
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("killed while saving")
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    # A write killed with SIGKILL leaves its hidden sibling; the next one removes it (its pid is gone).
    leftover = dest.parent / f".{dest.name}.tmp-{DEAD_PID}-deadbeef"
    leftover.mkdir()
    alive = dest.parent / f".{dest.name}.tmp-{os.getpid()}-cafecafe"
    alive.mkdir()
    with atomic_dir(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(f".{dest.name}.tmp-{os.getpid()}-")
        (tmp / "config.json").write_text("{}")
    assert (dest / "config.json").is_file() and not leftover.exists() and alive.exists()


def test_atomic_dir_replaces_an_existing_folder_only_once_the_new_one_is_complete(tmp_path):
    dest = tmp_path / "stage"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(dest) as tmp:
            (tmp / "new.txt").write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]  # the failed write left the old folder alone
    with atomic_dir(dest) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (dest / "old.txt").is_file()  # still there while the new one is being built
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]  # no temporary or replaced sibling left


def test_atomic_dir_keep_leaves_a_folder_another_writer_finished_first(tmp_path):
    dest = tmp_path / "student-abc"
    with atomic_dir(dest, if_exists="keep") as tmp:
        (tmp / "mine.txt").write_text("mine")
        dest.mkdir()  # another process renamed its (same-content) copy into place meanwhile
        (dest / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in dest.iterdir()) == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["student-abc"]
    with pytest.raises(ValueError, match="'replace' or 'keep'"):
        with atomic_dir(dest, if_exists="overwrite"):  # type: ignore[arg-type]
            pass


def test_stale_cleanup_removes_dead_writers_leftovers_only(tmp_path):
    dest = tmp_path / "run" / "teach"
    dest.parent.mkdir()
    dead = [dest.parent / f".teach.tmp-{DEAD_PID}-0a1b2c3d", dest.parent / f".teach.old-{DEAD_PID}",
            dest.parent / f".teach.tmp-{DEAD_PID}"]  # fmt: skip
    kept = [dest.parent / f".teach.tmp-{os.getpid()}-0a1b2c3d", dest.parent / f".teach2.tmp-{DEAD_PID}-0a1b2c3d",
            dest.parent / ".teach.tmp-notapid"]  # fmt: skip
    for p in dead + kept:
        p.mkdir()
    assert sorted(remove_stale_tmp(dest)) == sorted(dead)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in dead)
    assert remove_stale_tmp(tmp_path / "missing" / "x") == []


# -- hf_home --------------------------------------------------------------------------------------------------------
def test_hf_home_agrees_with_huggingface_hub_constant_for_the_same_environment(tmp_path):
    """huggingface_hub.constants.HF_HOME is read once at import; hf_home() applies the same rule at call time."""
    code = "from huggingface_hub import constants; import ftcot_hf.utils as u; print(constants.HF_HOME, u.hf_home())"
    base = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "XDG_CACHE_HOME")}
    for extra in ({"HF_HOME": str(tmp_path / "hf")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {"HOME": "/nohome"},
                  {"HF_HOME": "~/hf"}):  # fmt: skip
        out = subprocess.run([sys.executable, "-c", code], env={**base, **extra}, capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
        assert out[0] == out[1], extra


def test_hf_home_follows_the_environment_after_import(monkeypatch, tmp_path):
    import huggingface_hub.constants  # imported first: its HF_HOME is frozen from now on

    from ftcot_hf.students.loading import default_student_cache
    from ftcot_hf.teachers.cache import default_cache_path

    monkeypatch.delenv("FTCOT_HOME", raising=False)
    monkeypatch.delenv("FTCOT_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert huggingface_hub.constants.HF_HOME != str(tmp_path / "hf")
    assert hf_home() == tmp_path / "hf"
    assert default_student_cache() == tmp_path / "hf" / "ftcot" / "students"
    assert default_cache_path() == tmp_path / "hf" / "ftcot" / "teacher_cache.sqlite"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_home() == tmp_path / "xdg" / "huggingface"
    monkeypatch.setenv("FTCOT_HOME", str(tmp_path / "ftcot"))  # the overrides still win
    monkeypatch.setenv("FTCOT_CACHE", str(tmp_path / "mine.sqlite"))
    assert default_student_cache() == tmp_path / "ftcot" / "students"
    assert default_cache_path() == tmp_path / "mine.sqlite"


# -- pct ------------------------------------------------------------------------------------------------------------
def test_pct_is_two_decimals_of_a_fraction_and_a_dash_for_none():
    assert [pct(0.7733), pct(0.0), pct(1), pct(0.12345), pct(None)] == ["77.33", "0.00", "100.00", "12.35", "-"]


def test_report_and_model_card_keep_their_percentage_formats():
    from ftcot_hf.evaluation import EvalResult
    from ftcot_hf.evaluation.report import results_markdown
    from ftcot_hf.training.card import result_rows

    result = EvalResult(accuracy=0.7733, contains_answer=None, correct_format=1.0, complete=0.5, n=150,
                        maj_at_k=0.8, k=5, task="coin_flip", format="ft_cot")  # fmt: skip
    table = results_markdown([result], {})
    assert "| 150 | 77.33 | 80.00 (k=5) | - | 100.00 | 50.00 |" in table  # reports: no sign (the text says "in %")
    rows = dict(result_rows({"accuracy": 0.7733, "untrained_accuracy": 0.0, "n": 150, "complete": None}))
    assert rows == {"accuracy": "77.33%", "untrained accuracy": "0.00%", "test questions": "150"}  # cards: with %


def test_utils_import_nothing_heavy():
    code = "import sys, ftcot_hf.utils; print(*[m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.home())
    assert out.stdout.strip() == ""
