"""Several training processes on CPU: ``accelerate launch --cpu --num_processes N -m ftcot_hf.cli train ...``.

accelerate 1.x starts ONE process for ``--cpu`` unless it is given an MPI hostfile (its multi-CPU mode runs through
``mpirun``), whatever ``--num_processes`` says: the run would silently train on one process. It does set
``MASTER_ADDR``/``MASTER_PORT`` for N > 1, so ``ftcot train`` recognises that case and starts the N processes itself
with ``torch.distributed.run`` (DDP over gloo), reading N from the ``accelerate launch`` command line of its parent.
On GPUs ``accelerate launch --num_processes N`` starts the processes itself and nothing here runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from ftcot_hf.errors import FtcotError

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes")


def _parent_command_line() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def accelerate_cpu_processes(env: dict[str, str] | None = None, parent: list[str] | None = None) -> int | None:
    """N when this process was started by ``accelerate launch --cpu --num_processes N`` (N > 1) as its only
    process; None otherwise (a plain run, or a process that torchrun/accelerate already placed in a group)."""
    env = dict(os.environ if env is None else env)
    if env.get("ACCELERATE_USE_CPU", "").lower() not in _TRUE or "MASTER_ADDR" not in env:
        return None
    if any(name in env for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        return None
    parent = _parent_command_line() if parent is None else parent
    if "launch" not in parent or not any(Path(p).name.startswith("accelerate") or p.endswith("accelerate")
                                         for p in parent):  # fmt: skip
        return None
    args = parent[parent.index("launch") + 1 :]
    for i, arg in enumerate(args):
        for flag in ("--num_processes", "--num-processes"):
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            if not value.isdigit() or int(value) < 1:
                raise FtcotError(f"accelerate launch --num_processes {value!r}: give a whole number of processes.")
            return int(value) if int(value) > 1 else None
    # --num_processes came from an accelerate config file: it still started one process only.
    raise FtcotError(
        "accelerate launch --cpu started one process (accelerate runs several CPU processes only through mpirun): "
        "pass --num_processes N on the accelerate launch command line, or use "
        "`torchrun --nproc_per_node N -m ftcot_hf.cli train ...`."
    )


def relaunch_cpu_ddp(processes: int, argv: list[str]) -> int:
    """Run ``python -m ftcot_hf.cli <argv>`` in ``processes`` DDP processes over gloo; their exit status."""
    env = dict(os.environ)
    # The workers must not each start their own group; they train in one, on CPU.
    env["ACCELERATE_USE_CPU"] = "true"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
        "--master_addr", env.get("MASTER_ADDR", "127.0.0.1"), "--master_port", env.get("MASTER_PORT", "29500"),
        "-m", "ftcot_hf.cli", *argv,
    ]  # fmt: skip
    logger.info("accelerate launch --cpu starts one process: starting %d DDP processes (gloo) with torchrun",
                processes)  # fmt: skip
    return subprocess.call(command, env=env)
