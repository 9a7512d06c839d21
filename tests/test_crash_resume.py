"""kill -9 in the middle of `ftcot teach`: the re-run repeats at most the requests that were in flight."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

from tests.conftest import REPO_ROOT

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
        argv = [sys.executable, "-m", "ftcot_hf.cli", "teach", "--tasks", "coin_flip", "--teacher", "openai",
                "--model", "fake-model", "--base_url", f"http://127.0.0.1:{port}/v1",
                "--max_concurrency", str(CONCURRENCY), "--keep", "all", "--data_dir", str(mirror),
                "--cache_dir", str(cache), "--output_dir", str(tmp_path / "out")]  # fmt: skip
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
