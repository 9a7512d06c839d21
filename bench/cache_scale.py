"""The request cache at scale: fill it with ``--rows`` sample rows (default 10M) through ``CachedTeacher``, the path
``ftcot teach`` takes, then re-run fully cached through the same path. Goals (issue 18): a cached re-run >= 100k
rows/s, and RSS independent of the cache's size (measured at 1M rows and at the end).

Synthetic but realistic: stage-1 prompts of 250-650 characters (a GSM8K-size question plus the Zero-shot-CoT
trigger), 1-64 samples per request (uniform), each a 300-700-character rationale (~128 tokens) with token counts.
The teacher is an in-process stand-in that answers at once, so the fill measures the cache (keys, SQLite, commits:
one transaction per request, as results arrive), not a server. Requests are made chunk by chunk from their index
(64 per ``generate`` call, the concurrency bound the augmenter chunks two-stage teaching by), so the bench itself
holds nothing that grows with the cache. Printed: file size per row, insert rate, re-run rate, RSS (``/proc``)
after each phase, time to open the file (constructor + first lookup, in this process with the file in the OS page
cache, and in a fresh process). Other jobs share this machine's 2 cores: wall-clock rates move with them (the load
average is printed), rates per CPU second of this process much less; the files are deleted unless ``--keep``.

Last measured (2026-12-02, 2 cores, nothing else running; 16 min):

    at 1,002,086 rows: file 0.55 GB = 548 B/row; insert 90,218 rows/s; cached re-run 422,644 rows/s; RSS 28 -> 28 MB
    at 10,000,433 rows: file 5.48 GB = 548 B/row; insert 67,697 rows/s; cached re-run 299,603 rows/s (33.4 s);
      RSS 28 -> 28 MB; open + first lookup 1.0 ms (fresh process 0.8 ms)

    .venv/bin/python bench/cache_scale.py                      # 10M rows (~6 GB of disk while it runs)
    .venv/bin/python bench/cache_scale.py --rows 1000000 --dir /work/tmp
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `ftcot_hf` importable from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from ftcot_hf.teachers.base import Generation, Request, SamplingParams, Teacher  # noqa: E402
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache  # noqa: E402

CHUNK = 64
WORDS = ("the a of to and in is was he for it with as his on be at by had are but from or have an they which one you "
         "were her all she there would their we him been has when who will more no if out so said what up its about "
         "into than them can only other new some could time these two may then do first any my now such like our over "
         "man me even most made after also did many before must through back years where much your way well down "
         "apples coins marbles dollars minutes hours students pages cookies tickets").split()  # fmt: skip
PARAMS = SamplingParams(temperature=0.7, max_tokens=128)


_POOL = " ".join(random.Random(0).choices(WORDS, k=400_000))


def text(rng: random.Random, low: int, high: int) -> str:
    """A slice of a fixed word salad (cheap, so the fill measures the cache, not the text generator)."""
    start = rng.randrange(len(_POOL) - high)
    return _POOL[start : start + rng.randint(low, high)]


def chunk_requests(chunk: int) -> list[Request]:
    """The requests of chunk ``chunk``: a function of its index, so a re-run rebuilds the same ones."""
    rng = random.Random(chunk)
    return [
        Request(f"Q: {text(rng, 230, 630)} (#{chunk}.{i}) A: Let's think step by step.", PARAMS, n=rng.randint(1, 64))
        for i in range(CHUNK)
    ]


class InstantTeacher(Teacher):
    """Answers every request at once with deterministic rationales (the fill measures the cache, not a server)."""

    backend = "bench"

    def __init__(self, forbid: bool = False):
        self.model = "bench-model"
        self.forbid = forbid

    def identity(self) -> dict:
        return {"backend": self.backend, "model": self.model}

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        if self.forbid and requests:
            raise AssertionError(f"a fully cached re-run asked the teacher for {len(requests)} request(s)")
        for pos, request in enumerate(requests):
            rng = random.Random(hash(request.prompt))
            gens = []
            for _ in range(request.n):
                body = text(rng, 300, 700)
                gens.append(Generation(body, "stop", 90, len(body) // 4))
            yield pos, gens


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def fill(path: Path, first_chunk: int, target_rows: int, rows: int) -> tuple[int, int, float, float]:
    """Chunks from ``first_chunk`` until ``target_rows`` rows are in; (next chunk, rows, seconds, CPU seconds)."""
    cached = CachedTeacher(InstantTeacher(), RequestCache(path))
    chunk, start_rows, started, cpu = first_chunk, rows, time.perf_counter(), time.process_time()
    last = started
    try:
        while rows < target_rows:
            for _, gens in cached.generate(chunk_requests(chunk)):
                rows += len(gens)
            chunk += 1
            if time.perf_counter() - last > 15:
                last = time.perf_counter()
                rate = (rows - start_rows) / (last - started)
                print(f"  filled {rows:,} rows ({rate:,.0f} rows/s), RSS {rss_mb():.0f} MB", flush=True)
    finally:
        cached.close()
    return chunk, rows, time.perf_counter() - started, time.process_time() - cpu


def rerun(path: Path, chunks: int) -> tuple[int, float, float, float]:
    """Every chunk again through a fresh CachedTeacher whose teacher must not be called; (rows, seconds, CPU seconds,
    the CPU spent building the requests, which a real re-run has too but is not the cache's)."""
    cached = CachedTeacher(InstantTeacher(forbid=True), RequestCache(path))
    rows, build, started, cpu = 0, 0.0, time.perf_counter(), time.process_time()
    try:
        for chunk in range(chunks):
            t = time.process_time()
            requests = chunk_requests(chunk)
            build += time.process_time() - t
            for _, gens in cached.generate(requests):
                rows += len(gens)
    finally:
        cached.close()
    assert cached.calls == 0
    return rows, time.perf_counter() - started, time.process_time() - cpu, build


OPEN_SNIPPET = """
import sys, time
sys.path.insert(0, {root!r})
t = time.perf_counter()
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache
import_s = time.perf_counter() - t
t = time.perf_counter()
cache = RequestCache({path!r})
cache.lookup([bytes(32)])
print(import_s, time.perf_counter() - t)
"""


def time_to_open(path: Path) -> tuple[float, float]:
    """(in this process, in a fresh process excluding its imports): constructor + one lookup."""
    t = time.perf_counter()
    cache = RequestCache(path)
    cache.lookup([bytes(32)])
    here = time.perf_counter() - t
    cache.close()
    code = OPEN_SNIPPET.format(root=str(REPO_ROOT), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return here, float(out[1])


def report(label: str, path: Path, rows: int, fill_s: float, fill_cpu: float, chunks: int) -> None:
    size = file_bytes(path)
    before = rss_mb()
    again, seconds, cpu, build = rerun(path, chunks)
    assert again == rows, (again, rows)
    here, fresh = time_to_open(path)
    print(
        f"{label}: {rows:,} rows in {chunks * CHUNK:,} requests; file {size / 1e9:.2f} GB = {size / rows:.0f} B/row; "
        f"insert {rows / fill_s:,.0f} rows/s (per CPU second {rows / fill_cpu:,.0f})\n"
        f"  cached re-run {rows / seconds:,.0f} rows/s ({seconds:.1f} s; per CPU second {rows / cpu:,.0f}, without "
        f"building the requests {rows / (cpu - build):,.0f}), 0 teacher calls\n"
        f"  RSS before re-run {before:.0f} MB, after {rss_mb():.0f} MB; open + first lookup {here * 1e3:.1f} ms "
        f"(fresh process {fresh * 1e3:.1f} ms); load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="sample rows to fill (default 10M)")
    parser.add_argument("--checkpoint", type=int, default=1_000_000, help="also report at this many rows")
    parser.add_argument("--dir", type=Path, default=None, help="where the cache file goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the cache file")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    workdir = Path(tempfile.mkdtemp(prefix="ftcot-cache-scale-", dir=args.dir))
    path = workdir / "cache.sqlite"
    print(f"cache {path}; python {sys.version.split()[0]}; RSS at start {rss_mb():.0f} MB", flush=True)
    try:
        chunk, rows, total_s, total_cpu = 0, 0, 0.0, 0.0
        for target in sorted({min(args.checkpoint, args.rows), args.rows}):
            chunk, rows, seconds, cpu = fill(path, chunk, target, rows)
            total_s, total_cpu = total_s + seconds, total_cpu + cpu
            report(f"at {rows:,} rows", path, rows, total_s, total_cpu, chunk)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
