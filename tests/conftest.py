"""Shared fixtures. The offline mirror is ``$FTCOT_DATA_MIRROR`` (``make test`` and ``.ci/run`` set it to
``../shared/data``); tests that need it fail loudly in CI when it is missing and are skipped elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _mirror() -> Path | None:
    env = os.environ.get("FTCOT_DATA_MIRROR")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if (c / "kojima-takeshi188__zero_shot_cot").is_dir():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = _mirror()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs the offline mirror: set FTCOT_DATA_MIRROR (../shared/data).")
        pytest.skip("no offline mirror (set FTCOT_DATA_MIRROR)")
    return path


@pytest.fixture(scope="session")
def reference_dir(mirror: Path) -> Path:
    """The reference implementation's compiled datasets and split files, as published."""
    return mirror / "itsnamgyu__reasoning-teacher"


@pytest.fixture(scope="session")
def task_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf_datasets_cache")


@pytest.fixture(scope="session")
def built(mirror: Path, task_cache: Path):
    """load_task(name, variant) from the mirror, memoised for the session."""
    from ftcot_hf import load_task

    memo: dict = {}

    def get(name: str, variant: str = "default"):
        if (name, variant) not in memo:
            memo[name, variant] = load_task(name, variant, data_dir=mirror, cache_dir=task_cache)
        return memo[name, variant]

    return get


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch, tmp_path_factory):
    # Tests pass the mirror explicitly; a download must never be attempted by accident.
    monkeypatch.delenv("FTCOT_SOURCE_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A 2-layer random GPT-2 with the offline tokenizer, saved to a folder (one per test module)."""
    from tests.tiny_models import make_gpt2

    return make_gpt2(tmp_path_factory.mktemp("tiny_gpt2") / "gpt2")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: OpenMP threads waiting on each other cost up to 10x; one is fastest.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def arith_jsonl(tmp_path) -> Path:
    """A user's dataset file: ``tests.doubles.ARITH`` as ``problem``/``solution`` JSON lines."""
    from tests.doubles import ARITH, write_jsonl

    return write_jsonl(tmp_path / "my_arith.jsonl", [{"problem": q, "solution": a} for q, a in ARITH])
