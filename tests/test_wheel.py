"""The built wheel works outside the checkout: `pip install .` must carry everything `ftcot teach` and the cards
need (the Jinja card templates are package data). The wheel goes into a fresh venv that sees the project venv's
dependencies but not the editable ftcot_hf, and every command runs from a folder that is not the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# What `pip wheel .` reads: the package and the project metadata (README.md is the long description).
_SOURCES = ("pyproject.toml", "README.md", "ftcot_hf")
_TEMPLATES = ("tasks_dataset_card.md", "rationale_dataset_card.md", "student_model_card.md")


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel (non-editable, --no-deps); the project venv's site-packages is a plain path
    line of a .pth file, so its packages import but its .pth files (the editable ftcot_hf finder) never run."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy, so the build's build/ and *.egg-info stay out of the checkout
    src.mkdir()
    for name in _SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO_ROOT / name, src / name)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist")],
         cwd=src, env=env)  # fmt: skip
    (wheel,) = (root / "dist").glob("ftcot_hf-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=root, env=env)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
                .strip())  # fmt: skip
    (site / "ftcot_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env(tmp_path: Path, mirror: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FTCOT_HOME", "FTCOT_CACHE", "VIRTUAL_ENV")}
    return {**env, "FTCOT_DATA_MIRROR": str(mirror), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip


def test_installed_wheel_teaches_and_renders_cards_from_its_packaged_templates(wheel_venv, mirror, tmp_path):
    python, env = wheel_venv / "bin" / "python", _env(tmp_path, mirror)
    # The wheel's ftcot_hf is the one imported, not the checkout's.
    where = _run([str(python), "-c", "import ftcot_hf; print(ftcot_hf.__file__)"], cwd=tmp_path, env=env).strip()
    assert Path(where).resolve().is_relative_to(wheel_venv.resolve()), where

    _run([str(wheel_venv / "bin" / "ftcot"), "teach", "--tasks", "coin_flip", "--limit", "5", "--output_dir", "out"],
         cwd=tmp_path, env=env)  # fmt: skip
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: coin_flip" in card
    for line in ("# Fine-tune-CoT rationales", "## How to load", "## Sources"):  # the template's headings
        assert f"\n{line}\n" in card, line

    render = (
        "from ftcot_hf.training.card import render_model_card; "
        "print(render_model_card('someone/ftcot-coin_flip', base_model='gpt2', task='coin_flip', "
        "results={'accuracy': 0.5, 'n': 10}))"
    )
    model_card = _run([str(python), "-c", render], cwd=tmp_path, env=env)
    assert "base_model: gpt2" in model_card and "someone/ftcot-coin_flip" in model_card
    for line in ("# ftcot-coin_flip", "## Results", "## How to use", "## Training recipe"):
        assert f"\n{line}\n" in model_card, line
    assert "| accuracy | 50.00% |" in model_card  # the template's results table

    # Every template (the tasks card's too) is in the wheel, as in the checkout.
    probe = (
        "import json; from ftcot_hf.utils.export import template_text; "
        f"print(json.dumps({{n: template_text(n) for n in {_TEMPLATES}}}))"
    )
    packaged = json.loads(_run([str(python), "-c", probe], cwd=tmp_path, env=env))
    assert packaged == {n: (REPO_ROOT / "ftcot_hf" / "templates" / n).read_text() for n in _TEMPLATES}
