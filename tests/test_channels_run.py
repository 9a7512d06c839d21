"""Each teaching channel of issue 30 through `ftcot run` to the end (teach, train, eval) on a tiny student: the
provider batch API (against the loopback Batch API) and the offline vLLM engine (a stand-in `vllm` package: the
real one cannot live beside the project; tests/test_real_servers.py runs the real engine where it is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from tests.fake_batch_server import FakeBatchServer
from tests.test_teacher_vllm import vllm  # noqa: F401 -- the fixture
from tests.tiny_models import make_gpt2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("student") / "tiny")


def _run(tmp: Path, tiny: Path, mirror: Path, *teacher: str) -> list[str]:
    return ["run", "--tasks", "coin_flip", "--limit_train", "6", "--limit_test", "3", *teacher,
            "--student", str(tiny), "--num_train_epochs", "1", "--eval_max_new_tokens", "6", "--eval_batch_size", "4",
            "--cpu_threads", "1", "--data_dir", str(mirror), "--cache_dir", str(tmp / "c.sqlite"),
            "--output_dir", str(tmp / "run")]  # fmt: skip


def _stages(tmp: Path) -> dict[str, str]:
    return {name: s["status"] for name, s in json.loads((tmp / "run" / "stages.json").read_text()).items()}


def test_ftcot_run_with_the_openai_batch_api_teaches_trains_and_evaluates(tmp_path, tiny, mirror):
    with FakeBatchServer(tmp_path / "provider.json") as server:
        argv = _run(tmp_path, tiny, mirror, "--teacher", "openai_batch", "--teacher_model", "m", "--base_url",
                    server.base_url, "--teacher_kwargs", '{"poll_interval": 0}', "--keep", "all")  # fmt: skip
        assert main(argv) == 0
        assert len(server.batches) == 2  # stage 1, then stage 2: one batch each
        assert set(server.submitted.values()) == {1}  # no line twice
        assert main(argv) == 0  # the same command: every stage reused, nothing submitted
        assert len(server.batches) == 2
    assert set(_stages(tmp_path).values()) == {"reused"}
    report = json.loads((tmp_path / "run" / "rationales" / "yield_report.json").read_text())["reports"][0]
    assert report["kept"] == 6 and report["teacher"] == "m"
    assert (tmp_path / "run" / "student" / "coin_flip" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "eval" / "coin_flip" / "results.json").is_file()


def test_ftcot_run_with_the_offline_vllm_engine_teaches_trains_and_evaluates(vllm, tmp_path, tiny, mirror):  # noqa: F811
    argv = _run(tmp_path, tiny, mirror, "--teacher", "vllm", "--teacher_model", "org/m", "--keep", "all",
                "--teacher_kwargs", json.dumps({"max_model_len": 512}))
    assert main(argv) == 0
    assert len(vllm.LLM.instances) == 1
    assert set(_stages(tmp_path).values()) == {"ran"}
    report = json.loads((tmp_path / "run" / "rationales" / "yield_report.json").read_text())["reports"][0]
    assert report["kept"] == 6 and report["requests"] == 12  # two stages, one engine request per question each
    assert (tmp_path / "run" / "eval" / "coin_flip" / "results.json").is_file()
