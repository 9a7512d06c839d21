"""How fast the ``openai`` teacher drives an OpenAI-compatible server (goal: >= 0.9 of ideal at concurrency 64),
and how fast a fully cached re-run is (goal: 10,000 rows in <= 1 s).

The server is ``tests/fake_openai_server.py`` in its own process (so its CPU time does not compete for this
process's GIL) with a fixed 50 ms latency per request, which is what an inference server's batching looks like
from the client: ideal throughput is ``concurrency / latency``, and anything below it is client overhead.
Ratio = ideal time (requests x latency / concurrency) / measured time. The baseline, measured in the same run, is
the reference implementation's loop: batches of 20 prompts per completions request, sent one after another (with
a fixed per-request latency it looks better than it would on a real server, whose latency grows with the batch).
A minimal raw-socket client runs the same load to show what the server itself sustains: the gap between it and
the teacher at concurrency 64 is the openai client's CPU per request (its "client CPU ms/prompt" column), which
on a slow 2-CPU machine is most of the 0.78 ms per request that 1280 requests/s leave. The "N proc" rows run the
HTTP work in N worker processes (``OpenAITeacher(processes=N)``; their CPU is included in the CPU column, their
start-up is not timed). 640 prompts at concurrency 64 are only 10 rounds of the latency, so the ramp-up (the first
64 requests are built one after another) and the last stragglers weigh; the 2,560-prompt rows are the steady state.
Other processes on the machine take CPU from the client and the server alike: the load average is printed.

    .venv/bin/python bench/teach_throughput.py [--latency 0.05] [--rows 10000] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `ftcot_hf` importable from a checkout
    sys.path.insert(0, str(REPO_ROOT))

import openai  # noqa: E402

from ftcot_hf.teachers.base import Request, SamplingParams  # noqa: E402
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache, request_key  # noqa: E402
from ftcot_hf.teachers.http.openai import OpenAITeacher  # noqa: E402

MODEL = "bench-model"
PARAMS = SamplingParams(temperature=0.0, max_tokens=64)


class ServerProcess:
    """The fake server in a child process; it exits when our end of its stdin closes."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "fake_openai_server.py"), "--latency", str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake server did not start (said {line!r})")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/_stats", timeout=5) as response:
            return json.load(response)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def prompts(tag: str, count: int) -> list[str]:
    return [f"Q: bench {tag} question {i}? A: Let's think step by step." for i in range(count)]


def worker_cpu(teacher) -> float:
    """CPU seconds used so far by ``teacher``'s worker processes (``processes > 1``; Linux ``/proc``)."""
    teacher = getattr(teacher, "teacher", teacher)  # through a CachedTeacher
    pool = getattr(teacher, "_workers", None)
    total = 0.0
    for proc in pool.procs if pool else []:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_teacher(teacher, requests: list[Request]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and the teacher's worker processes) to receive every result."""
    wall, cpu = time.perf_counter(), time.process_time() + worker_cpu(teacher)
    received = sum(1 for _ in teacher.generate(requests))
    assert received == len(requests)
    return time.perf_counter() - wall, time.process_time() + worker_cpu(teacher) - cpu


def bench_teacher(
    url: str, concurrency: int, count: int, latency: float, http_backend: str = "auto", processes: int = 1
) -> dict:
    """The warm-up call also starts the worker processes, so their start-up is not timed."""
    with OpenAITeacher(
        MODEL, url, max_concurrency=concurrency, http_backend=http_backend, processes=processes
    ) as teacher:
        run_teacher(teacher, [Request(p, PARAMS) for p in prompts(f"warm{concurrency}", concurrency)])
        wall, cpu = run_teacher(teacher, [Request(p, PARAMS) for p in prompts(f"c{concurrency}", count)])
        assert teacher.stats["retries"] == 0, teacher.stats
    name = f"OpenAITeacher ({http_backend}, {processes} proc)"
    return row(name, count, concurrency, wall, cpu, count * latency / concurrency)


def bench_reference_loop(url: str, count: int, latency: float, batch: int = 20) -> dict:
    """The reference's loop: one completions request per 20 prompts, sequentially (sync client)."""
    client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=60)
    todo = prompts("ref", count)
    client.completions.create(model=MODEL, prompt=todo[:batch], max_tokens=PARAMS.max_tokens)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    texts: list[str] = []
    for start in range(0, count, batch):
        chunk = todo[start : start + batch]
        response = client.completions.create(model=MODEL, prompt=chunk, max_tokens=PARAMS.max_tokens, temperature=0)
        texts.extend(c.text for c in sorted(response.choices, key=lambda c: c.index))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(texts) == count
    client.close()
    batches = -(-count // batch)
    return row(f"reference loop ({batch} prompts/request)", count, 1, wall, cpu, batches * latency)


def bench_socket_floor(url: str, concurrency: int, count: int, latency: float) -> dict:
    """The same requests from a minimal raw-socket HTTP/1.1 client (no openai, no httpx): what the fake server
    sustains, so the gap between this row and the teacher's is client CPU, not the server."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    todo = list(prompts("floor", count))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while todo:
            body = json.dumps({"model": MODEL, "prompt": todo.pop(), "max_tokens": PARAMS.max_tokens}).encode()
            head = f"POST {parts.path}/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            headers = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            length = int(headers.split("content-length:")[1].split("\r\n")[0])
            json.loads(await reader.readexactly(length))
        writer.close()

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(concurrency)))

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return row("raw-socket client (server floor)", count, concurrency, wall, cpu, count * latency / concurrency)


def row(name: str, count: int, concurrency: int, wall: float, cpu: float, ideal: float) -> dict:
    return {
        "case": name,
        "prompts": count,
        "concurrency": concurrency,
        "seconds": wall,
        "per_s": count / wall,
        "ideal_per_s": count / ideal,
        "ratio": ideal / wall,
        "cpu_ms": cpu / count * 1e3,
    }


def bench_cold_fill(server: ServerProcess, rows: int, workdir: Path, processes: int, latency: float) -> dict:
    """Fill an empty cache with ``rows`` rows through the teacher (worker start-up not timed)."""
    requests = [Request(p, PARAMS) for p in prompts(f"cache{processes}", rows)]
    with OpenAITeacher(MODEL, server.base_url, max_concurrency=64, processes=processes) as teacher:
        run_teacher(teacher, [Request(p, PARAMS) for p in prompts(f"warmcache{processes}", 64)])
        cached = CachedTeacher(teacher, RequestCache(workdir / f"cold{processes}.sqlite"))
        wall, cpu = run_teacher(cached, requests)
        cached.cache.close()
    return row(f"CachedTeacher cold fill ({processes} proc)", rows, 64, wall, cpu, rows * latency / 64)


def bench_cache(server: ServerProcess, rows: int, workdir: Path) -> tuple[dict, dict]:
    """Fill a cache with ``rows`` rows through the teacher (cold), then re-run fully cached with a fresh teacher."""
    requests = [Request(p, PARAMS) for p in prompts("cache", rows)]
    path = workdir / "cache.sqlite"
    with OpenAITeacher(MODEL, server.base_url, max_concurrency=64) as teacher:
        cached = CachedTeacher(teacher, RequestCache(path))
        wall, cpu = run_teacher(cached, requests)
        cached.cache.close()
    cold = row("CachedTeacher cold fill (1 proc)", rows, 64, wall, cpu, rows * 0.05 / 64)
    before = server.stats()["requests"]
    with OpenAITeacher(MODEL, server.base_url, max_concurrency=64) as teacher:
        cached = CachedTeacher(teacher, RequestCache(path))
        wall, cpu = run_teacher(cached, requests)
        calls, hits = cached.calls, cached.cache_hits
        # where the time goes: the same two steps CachedTeacher does, timed apart
        identity = teacher.identity()
        t = time.perf_counter()
        keys = [request_key(identity, r, r.first_index) for r in requests]
        t_keys = time.perf_counter() - t
        t = time.perf_counter()
        found = cached.cache.get_many(keys)
        t_get = time.perf_counter() - t
        cached.cache.close()
    assert calls == 0 and hits == rows and len(found) == rows, (calls, hits, len(found))
    assert server.stats()["requests"] == before, "a cached re-run made HTTP requests"
    warm = {"rows": rows, "seconds": wall, "keys_s": t_keys, "get_many_s": t_get, "http_requests": 0}
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per request")
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the cached re-run")
    parser.add_argument("--processes", type=int, default=2, help="worker processes for the multi-process rows")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # httpx2 logs every request at INFO
    print(
        f"cpus: {os.cpu_count()}  python {platform.python_version()}  openai {openai.__version__}  "
        f"server latency {args.latency * 1e3:.0f} ms (separate process)"
    )
    server = ServerProcess(args.latency)
    try:
        url, lat, procs = server.base_url, args.latency, args.processes
        # 640 prompts at concurrency 64 is 10 rounds of the latency, so ramp-up and the last stragglers weigh;
        # the 2,560-prompt rows show the steady state
        results = [
            bench_teacher(url, 1, 64, lat),
            bench_teacher(url, 8, 640, lat),
            bench_teacher(url, 64, 640, lat),
            bench_teacher(url, 64, 2560, lat),
            bench_teacher(url, 64, 640, lat, processes=procs),
            bench_teacher(url, 64, 2560, lat, processes=procs),
            bench_teacher(url, 64, 640, lat, "httpx"),
            bench_socket_floor(url, 64, 640, lat),
            bench_socket_floor(url, 64, 2560, lat),
            bench_reference_loop(url, 640, lat),
        ]
        print(f"server saw max {server.stats()['max_in_flight']} requests in flight")
        with tempfile.TemporaryDirectory() as tmp:
            cold, warm = bench_cache(server, args.rows, Path(tmp))
            results.append(cold)
            results.append(bench_cold_fill(server, args.rows, Path(tmp), procs, lat))
    finally:
        server.close()
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.2f} (other processes on this machine take CPU from both sides)")
    header = f"{'case':<38}{'prompts':>8}{'conc':>6}{'seconds':>9}{'prompts/s':>11}{'ideal/s':>9}{'ratio':>7}"
    print(header + f"{'client CPU ms/prompt':>22}")
    for r in results:
        print(
            f"{r['case']:<38}{r['prompts']:>8}{r['concurrency']:>6}{r['seconds']:>9.2f}{r['per_s']:>11.0f}"
            f"{r['ideal_per_s']:>9.0f}{r['ratio']:>7.2f}{r['cpu_ms']:>22.2f}"
        )
    print(
        f"cached re-run: {warm['rows']} rows in {warm['seconds']:.2f} s (goal <= 1 s), {warm['http_requests']} HTTP "
        f"requests; of which computing the keys {warm['keys_s']:.2f} s, SQLite get_many {warm['get_many_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
