"""``ftcot teach`` at 10k / 100k / 1M questions with 8 KB reasoning traces: peak RSS, requests/s, and resuming.

Goals (issue 29): peak RSS at 1M within 1.3x the peak at 10k and below 2 GB; requests/s at 1M within 0.9x of the
rate at 10k; a run killed (kill -9) half-way and run again sends only the unanswered requests and ends with the
dataset an uninterrupted run writes; a fully cached re-run goes at >= 100k samples/s from the command line.

Each cell runs the command a user types, in its own process, under ``/usr/bin/time`` (peak RSS of that process):

    ftcot teach --dataset scale.jsonl --question_column problem --answer_column solution --answer_type number \\
        --task_name scale --test_size 1000 --teacher openai --model bench --base_url URL --chat true \\
        --max_concurrency 64 --cache_dir C --output_dir O

against this file run with ``--serve`` in its own process: a bare asyncio HTTP/1.1 server answering every chat
request at once with a reasoning reply (an 8 KB ``<think>`` trace, then "Therefore, the answer is N." with the
question's gold answer, so every row is kept), as cheap per request as a Python server can be: the cells measure
the client. req/s is the server's count over the span between the first and the last request it received (the
teaching phase; reading the file and saving the dataset are in "seconds"). This machine has 2 cores shared by the
client and the server: the absolute rate is the server's and the client's CPU together; the ratio between sizes is
the point.

    .venv/bin/python bench/teach_scale.py                        # 10k, 100k, 1M + the resume checks (~1 h)
    .venv/bin/python bench/teach_scale.py --sizes 10000 100000   # a quicker table
    .venv/bin/python bench/teach_scale.py --resume_size 100000   # kill -9 at half of 100k, resume, compare
    .venv/bin/python bench/teach_scale.py --sizes 10000 --resume_size 0 --merge_size 100000   # ftcot merge's RSS
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bare_http import BareHTTP  # beside this file: a bench runs as a script
from bare_http import serve as serve_until_closed

REPO_ROOT = Path(__file__).resolve().parents[1]
TRACE_BYTES = 8192
FILLER = ("We add the two numbers digit by digit, carrying where the column sum passes nine, and check the total "
          "by subtracting one addend from it. ") * (TRACE_BYTES // 120 + 1)  # fmt: skip
QUESTION = re.compile(rb"what is (\d+) plus (\d+)\?")
TEST_ROWS = 1000


# -- the server (its own process) ----------------------------------------------------------------------------------
class _Server(BareHTTP):
    stats = {"requests": 0, "first": 0.0, "last": 0.0, "prompts": 0}
    seen: set[bytes] = set()
    repeats = 0

    def request(self, method: str, path: str, body: bytes) -> None:
        stats = self.stats
        if method == "GET":  # /_stats
            payload = json.dumps({**stats, "repeats": _Server.repeats}).encode()
        else:
            now = time.monotonic()
            stats["requests"] += 1
            stats["first"] = stats["first"] or now
            stats["last"] = now
            match = QUESTION.search(body)
            key = match.group(0) if match else body
            if key in _Server.seen:  # a prompt asked twice (a resume must not)
                _Server.repeats += 1
            _Server.seen.add(key)
            a, b = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
            text = f"<think>Item {a}+{b}. {FILLER[: TRACE_BYTES - 40]}</think>Therefore, the answer is {a + b}."
            payload = json.dumps({
                "id": "chatcmpl-scale", "object": "chat.completion", "created": 0, "model": "bench",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 2000, "total_tokens": 2040},
            }).encode()  # fmt: skip
        self.reply(payload)


class ServerProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"bench server did not start (said {line!r})")
        self.port = int(line.split()[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=10) as r:
            return json.loads(r.read())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# -- the client (the command line) ---------------------------------------------------------------------------------
def write_dataset(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            a, b = 1000 + i, 7 * i % 9973
            f.write(json.dumps({"problem": f"Item {i}: what is {a} plus {b}?", "solution": str(a + b)}) + "\n")


def argv(data: Path, base_url: str, work: Path, name: str) -> list[str]:
    ftcot = str(Path(sys.executable).parent / "ftcot")
    return [ftcot, "teach", "--dataset", str(data), "--question_column", "problem", "--answer_column", "solution",
            "--answer_type", "number", "--task_name", "scale", "--test_size", str(TEST_ROWS), "--teacher", "openai",
            "--model", "bench", "--base_url", base_url, "--chat", "true", "--max_concurrency", "64",
            "--cache_dir", str(work / "cache.sqlite"), "--output_dir", str(work / name)]  # fmt: skip


def run_cli(cmd: list[str], log: Path, kill_at: int | None = None, server: ServerProcess | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time; with ``kill_at``, kill -9 it once the server has received that many
    requests. Returns wall seconds, peak RSS (MB) and the exit code."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # fmt: skip
        sampler = RssSampler(proc.pid, log.with_suffix(".rss.tsv"))
        if kill_at is not None and server is not None:
            while proc.poll() is None and server.stats()["requests"] < kill_at:
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
        sampler.stop()
    seconds = time.monotonic() - t0
    text = log.read_text(errors="replace")
    rss = re.findall(r"MAXRSS_KB (\d+)", text)
    return {"seconds": seconds, "rss_mb": int(rss[-1]) / 1024 if rss else float("nan"), "code": code,
            "anon_mb": sampler.peak["RssAnon"] / 1024, "file_mb": sampler.peak["RssFile"] / 1024}  # fmt: skip


class RssSampler:
    """The command's resident memory split as the kernel counts it, every 0.1 s (into ``path``, a TSV): RssAnon
    (the heap: what the process allocated) and RssFile (pages of files it memory-maps, Arrow files included: clean
    page cache the kernel can drop, yet counted in the peak RSS that /usr/bin/time reports)."""

    def __init__(self, time_pid: int, path: Path):
        import threading

        self.time_pid, self.path = time_pid, path
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _child(self) -> int | None:
        try:  # /usr/bin/time's one child is the command
            return int(Path(f"/proc/{self.time_pid}/task/{self.time_pid}/children").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def _run(self) -> None:
        t0 = time.monotonic()
        with self.path.open("w") as out:
            out.write("seconds\tRssAnon_kB\tRssFile_kB\n")
            while not self._done.wait(0.1):
                pid = self._child()
                try:
                    status = Path(f"/proc/{pid}/status").read_text() if pid else ""
                except OSError:
                    continue
                values = dict(re.findall(r"^(RssAnon|RssFile):\s+(\d+) kB", status, re.M))
                if len(values) == 2:
                    now = {k: int(v) for k, v in values.items()}
                    self.peak = {k: max(self.peak[k], now[k]) for k in self.peak}
                    out.write(f"{time.monotonic() - t0:.1f}\t{now['RssAnon']}\t{now['RssFile']}\n")

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def kept_rows(folder: Path) -> int:
    report = json.loads((folder / "yield_report.json").read_text())["reports"][0]
    return int(report["kept"])


def workdir(root: Path, name: str, n: int) -> tuple[Path, Path]:
    """A cell's folder and its dataset of ``n`` questions."""
    work = root / name
    work.mkdir(parents=True, exist_ok=True)
    data = work / "scale.jsonl"
    write_dataset(data, n)
    return work, data


def cell(n: int, root: Path) -> dict:
    work, data = workdir(root, f"n{n}", n)
    server = ServerProcess()
    try:
        result = run_cli(argv(data, server.base_url, work, "out"), work / "teach.log")
        stats = server.stats()
    finally:
        server.close()
    if result["code"] != 0:
        raise SystemExit(f"{n}: ftcot teach exited {result['code']}; see {work / 'teach.log'}")
    span = max(stats["last"] - stats["first"], 1e-9)
    cached = cached_rerun(data, work)
    shutil.rmtree(work / "out", ignore_errors=True)
    (work / "cache.sqlite").unlink(missing_ok=True)
    return {"questions": n, "rows": kept_rows_from(work), **result, "requests": stats["requests"],
            "req_s": stats["requests"] / span, "cached": cached}  # fmt: skip


def kept_rows_from(work: Path) -> int:
    return json.loads((work / "kept.json").read_text())["kept"]


def cached_rerun(data: Path, work: Path) -> dict:
    """The same command again: every reply is cached (a dead server URL proves nothing is sent)."""
    (work / "kept.json").write_text(json.dumps({"kept": kept_rows(work / "out")}))
    result = run_cli(argv(data, "http://127.0.0.1:9/v1", work, "out2"), work / "cached.log")
    if result["code"] != 0:
        raise SystemExit(f"cached re-run exited {result['code']}; see {work / 'cached.log'}")
    samples = kept_rows(work / "out2")
    shutil.rmtree(work / "out2", ignore_errors=True)
    return {"seconds": result["seconds"], "samples_s": samples / result["seconds"], "rss_mb": result["rss_mb"]}


def resume_check(n: int, root: Path) -> dict:
    """kill -9 at half of an n-question run, run it again: only the unanswered requests are sent, and the dataset
    equals an uninterrupted run's."""
    import datasets

    work, data = workdir(root, f"resume{n}", n)
    taught = n - TEST_ROWS
    server = ServerProcess()
    try:
        killed = run_cli(argv(data, server.base_url, work, "out"), work / "killed.log", kill_at=taught // 2,
                         server=server)  # fmt: skip
        first = server.stats()["requests"]
        resumed = run_cli(argv(data, server.base_url, work, "out"), work / "resumed.log")
        stats = server.stats()
    finally:
        server.close()
    second = stats["requests"] - first
    fresh = root / f"fresh{n}"
    fresh.mkdir(exist_ok=True)
    server = ServerProcess()
    try:
        whole = run_cli(argv(data, server.base_url, fresh, "out"), fresh / "teach.log")
    finally:
        server.close()
    a = datasets.load_dataset(str(work / "out"), "scale", split="train", cache_dir=str(root / "hf"))
    b = datasets.load_dataset(str(fresh / "out"), "scale", split="train", cache_dir=str(root / "hf"))
    equal = a.num_rows == b.num_rows and a.to_pandas().equals(b.to_pandas())
    return {"questions": n, "taught": taught, "killed_code": killed["code"], "sent_before_kill": first,
            "sent_on_resume": second, "repeats": stats["repeats"], "resumed_code": resumed["code"],
            "resumed_seconds": resumed["seconds"], "uninterrupted_seconds": whole["seconds"],
            "equal": equal}  # fmt: skip


def merge_check(n: int, root: Path, parts: int = 2) -> dict:
    """Teach n questions as ``parts`` parts (``--num_shards``), then ``ftcot merge`` them: its peak RSS and time."""
    work, data = workdir(root, f"merge{n}", n)
    server = ServerProcess()
    try:
        folders = []
        for i in range(parts):
            cmd = argv(data, server.base_url, work, f"part{i}") + ["--num_shards", str(parts), "--shard_index", str(i)]
            cmd[cmd.index("--cache_dir") + 1] = str(work / f"cache{i}.sqlite")
            result = run_cli(cmd, work / f"part{i}.log")
            if result["code"] != 0:
                raise SystemExit(f"part {i} exited {result['code']}; see {work / f'part{i}.log'}")
            folders.append(str(work / f"part{i}"))
    finally:
        server.close()
    ftcot = str(Path(sys.executable).parent / "ftcot")
    merged = run_cli([ftcot, "merge", *folders, "--output_dir", str(work / "merged")], work / "merge.log")
    return {"questions": n, "parts": parts, "rows": kept_rows(work / "merged"), **merged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--resume_size", type=int, default=100_000, help="0: no resume check")
    parser.add_argument("--merge_size", type=int, default=100_000, help="0: no merge check")
    parser.add_argument("--workdir", default=None, help="Where the files go (default: a temporary folder).")
    args = parser.parse_args()
    if args.serve:
        serve_until_closed(_Server)
        return
    root = Path(args.workdir or tempfile.mkdtemp(prefix="ftcot-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| questions | rows | peak RSS (MB) | heap / mapped files (MB) | req/s | seconds | RSS / 10k | req/s / 10k "
          "| cached re-run samples/s |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for n in args.sizes:
        r = cell(n, root)
        rows.append(r)
        base = rows[0]
        print(f"| {n:,} | {r['rows']:,} | {r['rss_mb']:.0f} | {r['anon_mb']:.0f} / {r['file_mb']:.0f} | "
              f"{r['req_s']:,.0f} | {r['seconds']:.0f} | "
              f"{r['rss_mb'] / base['rss_mb']:.2f} | {r['req_s'] / base['req_s']:.2f} | "
              f"{r['cached']['samples_s']:,.0f} |", flush=True)  # fmt: skip
    if args.resume_size:
        r = resume_check(args.resume_size, root)
        print(f"\nResume at {r['questions']:,} questions ({r['taught']:,} taught): killed after "
              f"{r['sent_before_kill']:,} requests (exit {r['killed_code']}); the re-run sent {r['sent_on_resume']:,} "
              f"(sum {r['sent_before_kill'] + r['sent_on_resume']:,}, prompts asked twice: {r['repeats']}), exit "
              f"{r['resumed_code']} in {r['resumed_seconds']:.0f} s (uninterrupted: "
              f"{r['uninterrupted_seconds']:.0f} s); equal to the uninterrupted run: {r['equal']}")  # fmt: skip
    if args.merge_size:
        m = merge_check(args.merge_size, root)
        print(f"\nftcot merge of {m['parts']} parts of {m['questions']:,} questions: {m['rows']:,} rows, peak RSS "
              f"{m['rss_mb']:.0f} MB, {m['seconds']:.0f} s, exit {m['code']}")  # fmt: skip
    (root / "results.json").write_text(json.dumps({"cells": rows}, indent=2))
    print(f"\n(files in {root})")


if __name__ == "__main__":
    main()
