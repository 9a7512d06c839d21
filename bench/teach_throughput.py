"""``ftcot teach``'s HTTP client against a minimal raw ``aiohttp`` client, against one server, in one run.

Goals (issue 18): throughput ratio ours/raw >= 0.9 in every cell, and client CPU per request <= 2x the raw client's.

The server is this file run with ``--serve`` in its own process: a bare asyncio HTTP/1.1 server (keep-alive, one
``asyncio.sleep(latency)`` per request, a fixed OpenAI-style answer), as cheap per request as a server can be in
Python, so the cells measure the clients rather than the server. "ours" is the real code path of
``ftcot teach --teacher openai`` (``OpenAITeacher.generate``: its loop thread, the fleet, the openai client's
transport, the hand-off to the caller's thread); "raw" is ``aiohttp.ClientSession.post`` from ``concurrency``
coroutines with ``json.loads`` of each answer, the least a Python client can do. Both send the same bodies and
decode every answer. Client CPU is ``time.process_time()`` of this process (all its threads) per request; ideal
throughput is ``concurrency / latency``. Each measured run is preceded by a warm-up round (connections opened).

This machine has 2 cores shared with the server and with other engineers' jobs: absolute figures move with the
load, the ratios (ours vs raw in the same cell, measured back to back against the same server) mostly do not.

History: ours was the openai client over its aiohttp adapter (0.9 ms of client CPU per request, 3.1-5.6x raw);
it now posts through a bare aiohttp session (``transport.make_aiohttp_session``). The worker-process pool
(``processes=N``) was measured here before its removal, 256 in flight: 50 ms latency 1 process 3,660-4,020
requests/s vs 2 processes 4,106-4,245 (+5-12 %, at more CPU per request); 1 s latency 239-250 vs 241-245 (nothing).

Last measured (2026-12-02, 2 cores, nothing else running; the 256 x 50 ms cell is CPU-bound, client and server
sharing the cores, and read 0.80-0.94 while other jobs ran):

     conc  latency  ideal/s  raw/s  ours/s  ours/raw  CPU ms/req raw / ours  CPU ours/raw
       64     50ms     1280   1176    1174      1.00          0.190 / 0.208          1.10
      256     50ms     5120   4643    4318      0.93          0.155 / 0.184          1.19
       64   1000ms       64     63      64      1.00          0.209 / 0.228          1.09
      256   1000ms      256    251     250      0.99          0.200 / 0.203          1.01

    .venv/bin/python bench/teach_throughput.py                 # the 4 cells + the cache rows (~4 min)
    .venv/bin/python bench/teach_throughput.py --quick         # fewer requests per cell
    .venv/bin/python bench/teach_throughput.py --profile 64 0.05   # cProfile of ours in one cell (top 40)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bare_http import BareHTTP  # beside this file: a bench runs as a script
from bare_http import serve as serve_until_closed

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `ftcot_hf` importable from a checkout
    sys.path.insert(0, str(REPO_ROOT))

MODEL = "bench-model"
MAX_TOKENS = 64
ANSWER = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "text_completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "text": " Let's see. " + "word " * 40, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 42, "total_tokens": 102},
    }
).encode()


# -- the server (its own process) ----------------------------------------------------------------------------------
class _ServerProtocol(BareHTTP):
    latency = 0.05
    stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}

    def request(self, method: str, path: str, body: bytes) -> None:
        asyncio.ensure_future(self._answer(path))

    async def _answer(self, path: str) -> None:
        stats = self.stats
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        await asyncio.sleep(self.latency)
        stats["in_flight"] -= 1
        self.reply(ANSWER)


def serve(latency: float) -> None:
    """Print ``PORT <n>``, serve until stdin closes."""
    _ServerProtocol.latency = latency
    serve_until_closed(_ServerProtocol)


class ServerProcess:
    """The bench server in a child process; it exits when our end of its stdin closes."""

    def __init__(self, latency: float):
        cmd = [sys.executable, __file__, "--serve", str(latency)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"bench server did not start (said {line!r})")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
        self.latency = latency

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- the clients ---------------------------------------------------------------------------------------------------
def prompts(tag: str, count: int) -> list[str]:
    """Realistic stage-1 prompts (~60 tokens)."""
    stem = "Q: A coin is heads up. Alice flips the coin. Bob does not flip the coin. Carol flips the coin. "
    return [f"{stem}Is the coin still heads up? (bench {tag} {i}) A: Let's think step by step." for i in range(count)]


def bodies(tag: str, count: int) -> list[dict]:
    """What OpenAITeacher.build_body sends for these prompts (temperature 0, one sample)."""
    return [{"model": MODEL, "prompt": p, "max_tokens": MAX_TOKENS, "temperature": 0.0, "top_p": 1.0} for p in
            prompts(tag, count)]  # fmt: skip


def run_raw(url: str, concurrency: int, count: int) -> tuple[float, float]:
    """(wall s, CPU s) of ``count`` requests from a bare aiohttp client, ``concurrency`` in flight."""
    import aiohttp

    async def go(session: aiohttp.ClientSession, todo: list[dict]) -> None:
        async def worker() -> None:
            while todo:
                async with session.post(url + "/completions", json=todo.pop()) as response:
                    data = json.loads(await response.read())
                    assert response.status == 200 and data["choices"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def main() -> tuple[float, float]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers={"Authorization": "Bearer EMPTY"}) as session:
            await go(session, bodies("rawwarm", concurrency))
            wall, cpu = time.perf_counter(), time.process_time()
            await go(session, bodies("raw", count))
            return time.perf_counter() - wall, time.process_time() - cpu

    return asyncio.run(main())


def run_ours(url: str, concurrency: int, count: int, processes: int = 1) -> tuple[float, float]:
    """(wall s, CPU s incl. worker processes) of ``count`` requests through ``ftcot teach``'s openai backend."""
    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    kwargs = {"processes": processes} if processes > 1 else {}
    with OpenAITeacher(MODEL, url, max_concurrency=concurrency, **kwargs) as teacher:
        warm = [Request(p, params) for p in prompts("ourswarm", concurrency)]
        assert sum(1 for _ in teacher.generate(warm)) == len(warm)
        requests = [Request(p, params) for p in prompts("ours", count)]
        wall, cpu = time.perf_counter(), time.process_time() + _worker_cpu(teacher)
        received = 0
        for _, gens in teacher.generate(requests):
            assert gens[0].text
            received += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() + _worker_cpu(teacher) - cpu
        assert received == count and teacher.stats["retries"] == 0, teacher.stats
    return wall, cpu


def _worker_cpu(teacher: object) -> float:
    """CPU seconds of a teacher's worker processes so far (``processes > 1``; Linux ``/proc``)."""
    pool = getattr(teacher, "_workers", None)
    total = 0.0
    for proc in pool.procs if pool else []:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cell(server: ServerProcess, concurrency: int, count: int, repeats: int) -> dict:
    """Raw and ours, interleaved ``repeats`` times; each keeps its fastest run (a burst of other jobs on the machine
    slows one run, never speeds one up)."""
    raw, ours = [], []
    for _ in range(repeats):
        raw.append(run_raw(server.base_url, concurrency, count))
        ours.append(run_ours(server.base_url, concurrency, count))
    (raw_wall, raw_cpu), (ours_wall, ours_cpu) = min(raw), min(ours)
    return {
        "concurrency": concurrency,
        "latency_ms": server.latency * 1e3,
        "requests": count,
        "ideal": concurrency / server.latency,
        "raw_per_s": count / raw_wall,
        "ours_per_s": count / ours_wall,
        "raw_cpu_ms": raw_cpu / count * 1e3,
        "ours_cpu_ms": ours_cpu / count * 1e3,
    }


def print_cells(cells: list[dict]) -> None:
    print(f"{'conc':>5}{'latency':>9}{'requests':>9}{'ideal/s':>9}{'raw/s':>8}{'ours/s':>8}{'ours/raw':>9}"
          f"{'raw CPU ms/req':>16}{'ours CPU ms/req':>17}{'CPU ours/raw':>14}")  # fmt: skip
    for c in cells:
        print(
            f"{c['concurrency']:>5}{c['latency_ms']:>7.0f}ms{c['requests']:>9}{c['ideal']:>9.0f}{c['raw_per_s']:>8.0f}"
            f"{c['ours_per_s']:>8.0f}{c['ours_per_s'] / c['raw_per_s']:>9.2f}{c['raw_cpu_ms']:>16.3f}"
            f"{c['ours_cpu_ms']:>17.3f}{c['ours_cpu_ms'] / c['raw_cpu_ms']:>14.2f}"
        )


def run_cache(url: str, rows: int, workdir: Path) -> tuple[dict, dict]:
    """A cold fill of an empty cache through ``CachedTeacher`` (what ``ftcot teach`` runs) at concurrency 64, then a
    fully cached re-run of the same requests with a fresh teacher: rows/s and CPU per row of each."""
    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.cache import CachedTeacher, RequestCache
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    requests = [Request(p, params) for p in prompts("cache", rows)]
    out = []
    for attempt in ("cold", "cached"):
        with OpenAITeacher(MODEL, url, max_concurrency=64) as teacher:
            if attempt == "cold":  # connections opened, as in the other cells
                assert sum(1 for _ in teacher.generate([Request(p, params) for p in prompts("cwarm", 64)])) == 64
            before = teacher.stats["http_requests"]
            cached = CachedTeacher(teacher, RequestCache(workdir / "cache.sqlite"))
            wall, cpu = time.perf_counter(), time.process_time()
            assert sum(1 for _ in cached.generate(requests)) == rows
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            sent = teacher.stats["http_requests"] - before
            cached.cache.close()
        assert sent == (rows if attempt == "cold" else 0), (attempt, sent)
        out.append({"rows": rows, "per_s": rows / wall, "cpu_ms": cpu / rows * 1e3, "http_requests": sent})
    return out[0], out[1]


def profile(concurrency: int, latency: float, count: int) -> None:
    """cProfile of ours' event-loop work: ``HTTPTeacher._run`` driven on this thread (cProfile sees one thread; the
    teacher's loop thread is where the per-request CPU goes)."""
    import cProfile
    import pstats
    import queue

    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    server = ServerProcess(latency)
    teacher = OpenAITeacher(MODEL, server.base_url, max_concurrency=concurrency)
    profiler = cProfile.Profile()

    async def main() -> None:
        await teacher._setup()
        await teacher._run([Request(p, params) for p in prompts("pwarm", concurrency)], queue.SimpleQueue())
        profiler.enable()
        await teacher._run([Request(p, params) for p in prompts("p", count)], queue.SimpleQueue())
        profiler.disable()
        await teacher._aclose()

    try:
        asyncio.run(main())
    finally:
        server.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=float, metavar="LATENCY", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests per cell, one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per client and cell (best kept)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the cache rows")
    parser.add_argument("--profile", nargs=2, type=float, metavar=("CONCURRENCY", "LATENCY"))
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    logging.disable(logging.INFO)
    if args.profile:
        profile(int(args.profile[0]), args.profile[1], 4000)
        return 0
    import aiohttp
    import openai

    scale, repeats = (4, 1) if args.quick else (1, args.repeats)
    print(f"cpus: {os.cpu_count()}  python {platform.python_version()}  openai {openai.__version__}  "
          f"aiohttp {aiohttp.__version__}  load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    cells = []
    for latency, plan in ((0.05, ((64, 4000), (256, 8000))), (1.0, ((64, 640), (256, 2560)))):
        server = ServerProcess(latency)
        try:
            for concurrency, count in plan:
                cells.append(cell(server, concurrency, count // scale, repeats))
            if latency == 0.05:
                with tempfile.TemporaryDirectory() as tmp:
                    cold, warm = run_cache(server.base_url, args.rows // scale, Path(tmp))
        finally:
            server.close()
    print_cells(cells)
    ours64 = cells[0]
    print(
        f"CachedTeacher cold fill, 64 in flight, 50 ms: {cold['rows']} rows, {cold['per_s']:.0f} rows/s (ideal "
        f"{64 / 0.05:.0f}, ratio {cold['per_s'] / (64 / 0.05):.2f}; uncached ours {ours64['ours_per_s']:.0f}/s), "
        f"client CPU {cold['cpu_ms']:.3f} ms/row (uncached {ours64['ours_cpu_ms']:.3f})"
    )
    print(
        f"fully cached re-run (fresh teacher): {warm['rows']} rows, {warm['per_s']:.0f} rows/s, "
        f"{warm['cpu_ms'] * 1e3:.1f} us CPU/row, {warm['http_requests']} HTTP requests"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (the server and other jobs share these cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
