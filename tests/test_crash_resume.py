"""Process faults: kill -9 in the middle of `ftcot teach` (the re-run repeats at most the requests that were in
flight); kill -9 / SIGINT / SIGTERM in the middle of `ftcot run`'s teach and train stages; SIGINT, SIGTERM, a disk
full (a real EFBIG from ``RLIMIT_FSIZE``) and two concurrent writers for `ftcot teach`. After each, the same command
completes and its outputs equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from tests.conftest import REPO_ROOT
from tests.doubles import error_line, openai_teach_argv
from tests.fake_openai_server import FakeOpenAIServer

CONCURRENCY = 4


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as r:
        return json.loads(r.read())


def _cached_rows(path) -> int:
    if not path.exists():
        return 0
    try:
        return sqlite3.connect(path, timeout=10).execute("SELECT COALESCE(SUM(n), 0) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_mid_run_then_resume_repeats_at_most_in_flight(mirror, tmp_path):
    server = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests/fake_openai_server.py"), "--latency", "0.03"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = int(server.stdout.readline().split()[1])
        cache = tmp_path / "teacher.sqlite"
        env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
        argv = [sys.executable, "-m", "ftcot_hf.cli",
                *openai_teach_argv(f"http://127.0.0.1:{port}/v1", tmp_path / "out", cache, mirror,
                                   "--max_concurrency", str(CONCURRENCY), "--keep", "all")]  # fmt: skip
        run = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while _cached_rows(cache) < 150 and time.time() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert run.poll() is None, "the teaching run finished before it could be killed"
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        cached_at_kill = _cached_rows(cache)
        sent_before = _stats(port)["requests"]
        assert 150 <= cached_at_kill < 700  # 350 questions x 2 stages
        assert sent_before - cached_at_kill <= CONCURRENCY + 1  # lost: only what was in flight

        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
        resumed_calls = _stats(port)["requests"] - sent_before
        assert resumed_calls == 700 - cached_at_kill
        assert _cached_rows(cache) == 700
        report = json.loads((tmp_path / "out" / "yield_report.json").read_text())["reports"][0]
        assert report["samples"] == 350

        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
        assert _stats(port)["requests"] - sent_before == resumed_calls  # a third run makes zero calls
    finally:
        server.stdin.close()
        server.wait(10)


# -- process faults against `ftcot run` and `ftcot teach` (issue 15, "Tests and figures") ----------------------------
# Each fault is dealt to a real process at a known point (a request in flight, an epoch checkpoint just written), then
# the same command runs again and its outputs must equal an uninterrupted run's: rows, student weights, completions.
# The teacher is the loopback server answering correctly (tests.test_fault_matrix.text_for), so --keep correct keeps
# every sample and a lost or altered row shows.
CHILD = """
import os, signal, sys, time
# A background job of a script (pytest started with `&`) inherits SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler; a terminal's Ctrl-C is what these tests stand for, so restore it.
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
mark, pause, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
if pause == "checkpoint":  # hold the process right after its first epoch checkpoint is on disk
    import transformers
    real = transformers.Trainer._save_checkpoint
    def save(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        mark.touch()
        time.sleep(300)
        return out
    transformers.Trainer._save_checkpoint = save
from ftcot_hf.cli import main
sys.exit(main(argv))
"""


class Gate:
    """The server's latency: the first ``after`` requests are answered at once, the others are held (in flight) until
    ``open()``; ``held`` is set when the first one is held."""

    def __init__(self, after: int):
        self.after, self.count, self.opened = after, 0, False
        self.held = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> float:
        with self.lock:
            self.count += 1
            if self.opened or self.count <= self.after:
                return 0.0
        self.held.set()
        return 600.0  # woken when the server stops

    def open(self) -> None:
        with self.lock:
            self.opened = True


@pytest.fixture(scope="module")
def gold_server(mirror):
    from ftcot_hf.tasks import resolve_task
    from tests.test_fault_matrix import text_for

    train = resolve_task("coin_flip").load(data_dir=str(mirror))["train"]
    server = FakeOpenAIServer(text_for=text_for(dict(zip(train["question"], train["answer"], strict=True))))
    with server:
        yield server


def _spawn(argv: list[str], env: dict, pause: str = "none", mark: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, "-c", CHILD, str(mark or "-"), pause, *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "FTCOT_HOME": str(tmp_path / "ftcot_home")}  # fmt: skip


def _wait_for(condition, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before the fault: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    assert condition(), "the fault point was never reached"


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _train_rows(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    [parquet] = (folder / "coin_flip").glob("train-*.parquet")
    return sorted(pq.read_table(parquet).to_pylist(), key=lambda r: (r["sample_index"], r["completion_index"]))


def _run_outputs(out: Path) -> dict:
    """What a run produced, comparable across runs: rationale rows, student weights, eval completions and score."""
    from safetensors.numpy import load_file

    weights = load_file(str(out / "student" / "coin_flip" / "model.safetensors"))
    completions = [json.loads(line)["completion"] for line in (out / "eval/coin_flip/completions.jsonl").open()]
    results = json.loads((out / "eval/coin_flip/results.json").read_text())["results"][0]
    assert not list(out.rglob(".*.partial")) and not list(out.rglob(".*.tmp-*")), "a half-written folder was left"
    return {"rows": _train_rows(out / "rationales"), "weights": {k: v.tobytes() for k, v in weights.items()},
            "completions": completions, "accuracy": results["accuracy"]}  # fmt: skip


def _run_argv(server: FakeOpenAIServer, student: Path, out: Path, mirror: Path, *extra: str) -> list[str]:
    return ["run", "--student", str(student), "--teacher", "openai", "--teacher_model", "fake-model", "--base_url",
            server.base_url, "--limit_train", "12", "--limit_test", "3", "--eval_max_new_tokens", "6",
            "--eval_batch_size", "4", "--eval_untrained", "false", "--num_train_epochs", "2", "--cpu_threads", "1",
            "--data_dir", str(mirror), "--cache_dir", str(out.parent / f"{out.name}.sqlite"), "--output_dir",
            str(out), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def clean_run_dir(gold_server, tiny_gpt2, mirror, tmp_path_factory) -> Path:
    """An uninterrupted `ftcot run` (in-process: the same code, without a second import of the stack)."""
    out = tmp_path_factory.mktemp("clean_run") / "run"
    assert main(_run_argv(gold_server, tiny_gpt2, out, mirror)) == 0
    return out


@pytest.fixture(scope="module")
def clean_run(clean_run_dir) -> dict:
    return _run_outputs(clean_run_dir)


def test_run_killed_9_mid_teach_then_rerun_equals_a_clean_run(gold_server, tiny_gpt2, mirror, tmp_path, clean_run):
    out, env = tmp_path / "run", _env(tmp_path)
    gate = Gate(after=10)  # 12 questions: stage 1 and 2 of 5 answered, the rest held in flight
    gold_server.latency = gate
    try:
        proc = _spawn(_run_argv(gold_server, tiny_gpt2, out, mirror), env)
        _wait_for(gate.held.is_set, proc)
        time.sleep(0.3)  # what was answered is committed to the request cache
        proc.kill()
        proc.wait()
        assert not (out / "rationales").exists()  # no half stage in place
        gate.open()
        assert main(_run_argv(gold_server, tiny_gpt2, out, mirror)) == 0  # the same command
    finally:
        gold_server.latency = 0.0
    assert _run_outputs(out) == clean_run


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_run_stopped_mid_train_then_rerun_resumes_and_equals_a_clean_run(
    signal_name, gold_server, tiny_gpt2, mirror, tmp_path, clean_run, monkeypatch
):
    import transformers

    out, env, mark = tmp_path / "run", _env(tmp_path), tmp_path / "checkpointed"
    proc = _spawn(_run_argv(gold_server, tiny_gpt2, out, mirror), env, "checkpoint", mark)
    _wait_for(mark.exists, proc)
    proc.send_signal(getattr(signal, signal_name))
    code, _, err = _finish(proc)
    partial = out / "student" / ".coin_flip.partial"
    assert list(partial.glob("checkpoint-*")), "the epoch checkpoint to resume from is gone"
    if signal_name != "SIGKILL":
        assert code == {"SIGINT": 130, "SIGTERM": 143}[signal_name], err[-3000:]
        line = error_line(err, {"SIGINT": "interrupted", "SIGTERM": "terminated (SIGTERM)"}[signal_name], "ftcot:")
        assert "ftcot run" in line and "again to resume" in line
    else:
        assert code == -signal.SIGKILL
    sent, resumed_from = len(gold_server.requests), []
    real_train = transformers.Trainer.train

    def train(self, *args, **kwargs):
        resumed_from.append(kwargs.get("resume_from_checkpoint"))
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "train", train)
    assert main(_run_argv(gold_server, tiny_gpt2, out, mirror)) == 0  # the same command
    assert len(resumed_from) == 1 and "checkpoint-" in str(resumed_from[0])  # resumed, not restarted
    assert len(gold_server.requests) == sent  # the teach stage was reused: no request
    assert _run_outputs(out) == clean_run


def _teach_argv(server: FakeOpenAIServer, out: Path, cache: Path, mirror: Path, limit: int = 12, degree: int = 2):
    return openai_teach_argv(server.base_url, out, cache, mirror, "--degree", str(degree), limit=limit)


@pytest.fixture(scope="module")
def clean_teach(gold_server, mirror, tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("clean_teach")
    assert main(_teach_argv(gold_server, folder / "out", folder / "c.sqlite", mirror)) == 0
    return _train_rows(folder / "out")


@pytest.mark.parametrize(
    ("signal_name", "code", "said"),
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated (SIGTERM)")],  # SIGTERM: Slurm, Kubernetes, kill
)
def test_teach_interrupted_by_sigint_exits_130_with_one_line_and_the_rerun_equals_a_clean_run(
    signal_name, code, said, gold_server, mirror, tmp_path, clean_teach
):
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    gate = Gate(after=6)
    gold_server.latency = gate
    try:
        proc = _spawn(_teach_argv(gold_server, out, cache, mirror), _env(tmp_path))
        _wait_for(gate.held.is_set, proc)
        time.sleep(0.3)
        proc.send_signal(getattr(signal, signal_name))
        returncode, _, err = _finish(proc, timeout=60)
        gate.open()
        assert returncode == code, err[-3000:]
        line = error_line(err, said, "ftcot:")
        assert "request cache" in line and "`ftcot teach` command again to resume" in line
        assert not out.exists()  # nothing half-written
        sent = len(gold_server.requests)
        assert main(_teach_argv(gold_server, out, cache, mirror)) == 0
    finally:
        gold_server.latency = 0.0
    assert len(gold_server.requests) - sent <= 36 - gate.after  # the answered requests were not asked again
    assert _train_rows(out) == clean_teach


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead of the process dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    ("limit", "warm"),
    [
        pytest.param(2_000, False, id="fresh cache"),  # the request cache's own writes hit the limit
        pytest.param(40_000, True, id="warm cache"),  # the cache is read; no Arrow cache file is written
    ],
)  # fmt: skip
def test_teach_on_a_full_disk_is_one_line_leaves_the_folder_and_the_rerun_equals_a_clean_run(
    limit, warm, gold_server, mirror, tmp_path
):
    """A real EFBIG (``RLIMIT_FSIZE`` in the child) while re-teaching into a folder that holds a dataset: exit 2 with
    one line and the folder unchanged (or, if nothing had to be written past the limit, a clean success); then the
    same command without the limit ends with a clean run's rows."""
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    argv = _teach_argv(gold_server, out, cache, mirror, limit=100, degree=4)
    assert main(_teach_argv(gold_server, out, cache, mirror, limit=8, degree=4)) == 0  # the folder already there
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*argv[:-1], str(tmp_path / "clean")]) == 0  # the clean run (and, kept when warm, its cache)
    clean = _train_rows(tmp_path / "clean")
    if not warm:
        cache.unlink()
        for extra in tmp_path.glob("c.sqlite-*"):
            extra.unlink()
    code = [sys.executable, "-c", "import sys; from ftcot_hf.cli import main; sys.exit(main(sys.argv[1:]))", *argv]
    proc = subprocess.run(code, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limit(limit))  # fmt: skip
    if proc.returncode != 0:
        assert proc.returncode == 2, proc.stderr[-3000:]
        error_line(proc.stderr, "", "ftcot:")
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(argv) == 0
    assert _train_rows(out) == clean


def test_two_concurrent_teach_of_the_same_command_into_one_folder_both_succeed_with_a_clean_runs_rows(
    gold_server, mirror, tmp_path, clean_teach
):
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    gold_server.latency = 0.01  # both are still asking when the other starts
    try:
        procs = [_spawn(_teach_argv(gold_server, out, cache, mirror), _env(tmp_path)) for _ in range(2)]
        results = [_finish(proc) for proc in procs]
    finally:
        gold_server.latency = 0.0
    for code, stdout, stderr in results:
        assert code == 0 and "Saved to" in stdout and "Traceback" not in stderr, stderr[-3000:]
    assert _train_rows(out) == clean_teach
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []  # no build folder or lock left


@pytest.mark.parametrize(
    "stage",
    [
        "teach",
        "train",
    ],
)  # fmt: skip
def test_run_on_a_full_disk_is_one_line_keeps_earlier_stages_and_the_rerun_equals_a_clean_run(
    stage, gold_server, tiny_gpt2, mirror, tmp_path, clean_run, clean_run_dir
):
    """A real EFBIG in `ftcot run` under a 200 KB file-size limit: in the teach stage (the request cache's log
    grows past it) or, with the teacher's replies already cached, in the train stage (the student's ~600 KB
    weights). Exit 2 with one line naming the stage, finished stages kept and reused; then, without the limit, the
    same command completes with a clean run's outputs."""
    out = tmp_path / "run"
    argv = _run_argv(gold_server, tiny_gpt2, out, mirror)
    if stage == "train":  # every teacher reply already in the request cache: teach writes only small files
        shutil.copy(clean_run_dir.parent / "run.sqlite", tmp_path / "run.sqlite")
    code = [sys.executable, "-c", "import sys; from ftcot_hf.cli import main; sys.exit(main(sys.argv[1:]))", *argv]
    proc = subprocess.run(code, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limit(200_000))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"Stage '{stage}'" in error_line(proc.stderr, "earlier stages' outputs are intact", "ftcot:")
    assert not (out / "student").exists() or not list((out / "student").glob("coin_flip/*"))
    kept = (out / "rationales" / "stage.json").read_bytes() if stage == "train" else None
    assert main(argv) == 0
    if kept is not None:
        assert (out / "rationales" / "stage.json").read_bytes() == kept  # reused, not redone
    assert _run_outputs(out) == clean_run
