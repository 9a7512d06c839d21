"""How long building the 12 tasks from the offline mirror takes (goal: < 60 s on 2 CPU cores).

Prints, per task, a cold build through the datasets builder (fresh cache: sha256 checks, record construction, Arrow
writing), a warm load (from the prepared cache), and the baseline measured in the same run: record construction and
split computation alone in plain Python (what the builder cannot beat). Ratio = cold build / baseline.

    FTCOT_DATA_MIRROR=../shared/data .venv/bin/python bench/build_tasks.py
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import datasets

from ftcot_hf import TASKS, load_task
from ftcot_hf.tasks.sources import mirror_dir


def main() -> int:
    mirror = mirror_dir()
    if mirror is None:
        print("Set FTCOT_DATA_MIRROR to the offline mirror (e.g. ../shared/data).", file=sys.stderr)
        return 2
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    print(f"mirror: {mirror}  cpus: {os.cpu_count()}  datasets {datasets.__version__}")
    print(f"{'task':<27}{'rows':>7}{'baseline s':>12}{'cold s':>9}{'warm s':>9}{'cold/base':>11}")
    totals = [0.0, 0.0, 0.0]
    with tempfile.TemporaryDirectory() as cache:
        t_all = time.perf_counter()
        for name, task in TASKS.items():
            spec = task.source
            t = time.perf_counter()
            paths = {}
            for role, source in spec.sources.items():
                path = Path(mirror) / source.mirror_path
                paths[role] = path if path.exists() else None
            records = dict(spec.build(paths))
            spec.split_indices("default")
            base = time.perf_counter() - t

            t = time.perf_counter()
            ds = load_task(name, cache_dir=cache)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            load_task(name, cache_dir=cache)
            warm = time.perf_counter() - t
            rows = sum(split.num_rows for split in ds.values())
            assert rows <= len(records)
            totals = [totals[0] + base, totals[1] + cold, totals[2] + warm]
            print(f"{name:<27}{rows:>7}{base:>12.3f}{cold:>9.3f}{warm:>9.3f}{cold / base:>10.1f}x")
        wall = time.perf_counter() - t_all
    print(f"{'total':<27}{'':>7}{totals[0]:>12.3f}{totals[1]:>9.3f}{totals[2]:>9.3f}{totals[1] / totals[0]:>10.1f}x")
    print(f"all 12 tasks built cold in {totals[1]:.2f} s (goal < 60 s); whole script {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
