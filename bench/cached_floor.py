"""The floor of a fully cached ``ftcot teach`` re-run on this machine, per sample, one step at a time.

Issue 29 asks a cached re-run to go at >= 100k samples/s end to end. With 8 KB reasoning traces that is 800 MB/s of
text from the request cache (SQLite) to the rationale dataset (Arrow). This script times, each alone and in one
process, the steps every cached sample must go through however the code around them is written:

* ``sqlite read``: ``SELECT key, samples FROM requests WHERE key IN (...)`` in batches of 900 keys (as the cache does);
* ``json decode``: the cached row's JSON to Python strings;
* ``sha256 keys``: one request key per question (a JSON dump of the request and its digest, as the cache keys it);
* ``arrow write``: the rows' columns written to an Arrow stream file (as the shards are).

It prints samples/s for each and for their sum (the rate no implementation on this interpreter and disk can pass).

    .venv/bin/python bench/cached_floor.py              # 100,000 samples of 8 KB
    .venv/bin/python bench/cached_floor.py --rows 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time

import pyarrow as pa

TRACE = (("We add the two numbers digit by digit, carrying where the column sum passes nine, and check the total by "
          "subtracting one addend from it. ") * 70)[:8192]  # 8 KB, as bench/teach_scale.py's traces  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    n = args.rows
    folder = tempfile.mkdtemp(prefix="ftcot-floor-")
    db = os.path.join(folder, "cache.sqlite")
    keys = [hashlib.sha256(str(i).encode()).digest() for i in range(n)]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE requests (key BLOB PRIMARY KEY, n INTEGER, samples TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO requests VALUES (?, 1, ?)",
                     ((k, json.dumps([[f"<think>{TRACE}{i}</think>Therefore, the answer is {i}.", "stop", 40, 2000]]))
                      for i, k in enumerate(keys)))  # fmt: skip
    conn.execute("COMMIT")
    conn.close()
    os.system(f"cat {db}* > /dev/null")  # warm: the re-run's cache is in the page cache too

    times: dict[str, float] = {}
    conn = sqlite3.connect(db, isolation_level=None)
    start = time.perf_counter()
    rows: list[str] = []
    for i in range(0, n, 900):
        chunk = keys[i : i + 900]
        rows += [text for _, text in conn.execute(
            f"SELECT key, samples FROM requests WHERE key IN ({','.join('?' * len(chunk))})", chunk)]  # fmt: skip
    times["sqlite read"] = time.perf_counter() - start

    start = time.perf_counter()
    texts = [json.loads(r)[0][0] for r in rows]
    times["json decode"] = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(n):
        payload = {"model": "bench", "prompt": f"Q: what is {i} plus {i}?", "temperature": 0.7, "max_tokens": 4096}
        hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()
    times["sha256 keys"] = time.perf_counter() - start

    start = time.perf_counter()
    schema = pa.schema([("question", pa.string()), ("rationale", pa.string()), ("answer", pa.string())])
    with pa.OSFile(os.path.join(folder, "rows.arrow"), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for i in range(0, n, 2048):
            part = texts[i : i + 2048]
            writer.write_table(pa.table({"question": [f"what is {j} plus {j}?" for j in range(len(part))],
                                         "rationale": part, "answer": [str(j) for j in range(len(part))]},
                                        schema=schema))  # fmt: skip
    times["arrow write"] = time.perf_counter() - start

    print(f"{n:,} cached samples of {len(TRACE) // 1024} KB ({n * len(TRACE) / 1e6:,.0f} MB of traces):")
    print("| step | seconds | samples/s |\n|---|---|---|")
    for step, seconds in times.items():
        print(f"| {step} | {seconds:.2f} | {n / seconds:,.0f} |")
    total = sum(times.values())
    print(f"| all four | {total:.2f} | {n / total:,.0f} |")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
