"""The demo (`ftcot run` on its embedded default, as `make demo` runs it) timed per stage, against a 15-minute budget.

    python bench/demo_stages.py                        # this CPU as it is
    python bench/demo_stages.py --emulate-avx2         # as on a 2-core AVX2-only CPU without native bf16
    python bench/demo_stages.py --emulate-avx2 --fresh-hf-home   # + the one-off GGUF conversion of a fresh machine

`--emulate-avx2` caps the instruction sets the CPU kernels may use (PyTorch's ATen dispatch, oneDNN, MKL) at AVX2,
so a machine with AVX-512/AMX runs the demo as the newcomer's AVX2-only laptop or VM does: no native bf16 (the run
then trains in fp32, as it would there) and no AVX-512 matrix kernels. It prints the CPU flags it ran with, each
stage's seconds (from the run's stages.json), the wall time of the whole command, its peak RSS, and the ratio of the
wall time to the 15-minute budget (the baseline of this bench). The run folder is a fresh temporary one each time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 15 * 60
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    have = set(flags.split(":", 1)[1].split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return ", ".join(f"{f}={'yes' if f in have else 'no'}" for f in wanted) + f"; {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulate-avx2", action="store_true", help="cap CPU kernels at AVX2 (no native bf16)")
    parser.add_argument("--fresh-hf-home", action="store_true", help="an empty HF_HOME: the GGUF conversion included")
    parser.add_argument("--keep", default=None, help="write the run folder here instead of a temporary one")
    parser.add_argument("extra", nargs="*", help="more `ftcot run` flags (after --)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.emulate_avx2:
        env.update(AVX2_ENV)
    tmp = Path(tempfile.mkdtemp(prefix="ftcot-demo-"))
    if args.fresh_hf_home:
        env["HF_HOME"] = str(tmp / "hf")
    out = Path(args.keep) if args.keep else tmp / "run"
    command = [sys.executable, "-m", "ftcot_hf.cli", "run", "--output_dir", str(out), *args.extra]
    print(f"CPU: {cpu_flags()}" + ("; kernels capped at AVX2 (" + ", ".join(f"{k}={v}" for k, v in AVX2_ENV.items())
                                   + ")" if args.emulate_avx2 else ""), flush=True)  # fmt: skip
    print("command:", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    stages = json.loads((out / "stages.json").read_text())
    precision = next((line for line in proc.stderr.splitlines() if "training in " in line), "")
    print(precision.split("] ", 1)[-1])
    print("\n| stage | seconds |\n|---|---|")
    for name, stage in stages.items():
        print(f"| {name} | {stage['seconds']:.1f} |")
    print(f"| **whole command (wall)** | **{wall:.1f}** |")
    print(f"\n{proc.stdout.strip()}")
    print(f"\npeak RSS {peak_gib:.2f} GiB; wall / 15-minute budget = {wall / BUDGET_S:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
