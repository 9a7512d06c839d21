"""Math-Verify (HF's answer verifier) run under a wall-clock bound of our own, for ``mode="math_verify"``.

Its signal-based timeout only works in the main thread, so each parse + verify runs in one long-lived worker
process that is killed (and restarted) when it overruns: a timeout counts as no answer, never a hang.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import subprocess
import sys
import threading
from typing import Any

from ftcot_hf.errors import FtcotError

logger = logging.getLogger(__name__)

MATH_VERIFY_EXTRA = "pip install ftcot-hf[math]"


def require_math_verify() -> None:
    """FtcotError (one line naming the extra) when ``math-verify`` is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise FtcotError(f'mode="math_verify" needs the math-verify package: {MATH_VERIFY_EXTRA}')


# --- Math-Verify, bounded by our own wall clock ---------------------------------------------------------------------
#
# math_verify's own timeout is signal.alarm(): it only works in the main thread of the main interpreter (it raises
# in any other thread: a data-loader worker, the HTTP teacher's event-loop thread, a thread pool), and it cannot stop
# C code. A thread with a join timeout (and math_verify's timeouts off) would return in time, but it cannot stop the
# runaway sympy computation: the thread keeps holding the GIL and a CPU, and such threads pile up. So each call runs
# in ONE long-lived worker PROCESS (a plain `python -c` subprocess, not multiprocessing: no dependence on the
# caller's __main__ guard, no fork of a process that holds threads/CUDA), with math_verify's signal timeouts OFF
# (parsing_timeout=None, timeout_seconds=None: our limit is the single bound). The caller waits for the reply with
# select() for at most MATH_VERIFY_TIMEOUT_S; on a timeout the worker is killed (the computation really stops), the
# answer counts as "no answer found", and the next call starts a fresh worker. Calls from several threads are
# serialised by a lock; the limit covers one answer's parse + verify, not the worker's start-up (import of sympy).

MATH_VERIFY_TIMEOUT_S = float(os.environ.get("FTCOT_MATH_VERIFY_TIMEOUT_S", "5"))
"""Wall-clock limit of one Math-Verify parse + verify, in seconds (env ``FTCOT_MATH_VERIFY_TIMEOUT_S``)."""

_WORKER_START_TIMEOUT_S = 120.0


def _math_verify_call(text: str, gold: str) -> dict[str, Any]:
    """Runs in the worker: Math-Verify's prediction for ``text`` and whether it verifies against ``gold``."""
    from math_verify import parse, verify

    predicted = parse(text, parsing_timeout=None)
    if not predicted:
        return {"prediction": None, "correct": False}
    # parse() returns [sympy object, the matched text]: the text (sentence period dropped) is the prediction
    prediction = next((p for p in reversed(predicted) if isinstance(p, str)), str(predicted[0])).strip().rstrip(".")
    gold_parsed = parse(gold, parsing_timeout=None)
    correct = bool(gold_parsed) and bool(verify(gold_parsed, predicted, timeout_seconds=None))
    return {"prediction": prediction, "correct": correct}


def _math_verify_serve(target: str = "ftcot_hf.tasks.math_verify:_math_verify_call") -> None:
    """The worker's loop: one JSON request per stdin line -> one JSON reply per stdout line."""
    import importlib

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout is disabled" warning: we bound it
    module, _, attr = target.partition(":")
    func = getattr(importlib.import_module(module), attr)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the reply channel
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = func(request["text"], request["gold"])
        except Exception as e:  # a parse failure is "no answer", not a crash of the worker
            reply = {"prediction": None, "correct": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class MathVerifyWorker:
    """A Math-Verify worker process with a per-call wall-clock limit (see the comment above)."""

    def __init__(self, target: str = "ftcot_hf.tasks.math_verify:_math_verify_call", timeout_s: float | None = None):
        self.target = target
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"from ftcot_hf.tasks.math_verify import _math_verify_serve; _math_verify_serve({self.target!r})"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        if self._read(proc, _WORKER_START_TIMEOUT_S) is None:
            self._kill(proc)
            raise FtcotError(f"The Math-Verify worker did not start within {_WORKER_START_TIMEOUT_S:.0f} s.")
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen, timeout: float) -> dict[str, Any] | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = proc.stdout.readline()  # the worker writes whole lines at once
        return json.loads(line) if line else None

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait()

    def __call__(self, text: str, gold: str) -> dict[str, Any]:
        """``{"prediction": str | None, "correct": bool}`` (+ ``timed_out``/``error``); never blocks longer than
        the limit once the worker runs."""
        timeout = MATH_VERIFY_TIMEOUT_S if self.timeout_s is None else self.timeout_s
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"text": text, "gold": gold}) + "\n")
                proc.stdin.flush()
                reply = self._read(proc, timeout)
            except (BrokenPipeError, OSError, ValueError):
                reply = None
            if reply is None:
                self._kill(proc)
                self._proc = None
                logger.warning("Math-Verify gave no reply within %.1f s: counted as no answer.", timeout)
                return {"prediction": None, "correct": False, "timed_out": True}
            return reply

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._kill(self._proc)
                self._proc = None


_WORKER: MathVerifyWorker | None = None
_WORKER_LOCK = threading.Lock()


def math_verify_worker() -> MathVerifyWorker:
    """The process-wide Math-Verify worker (started on first use)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            require_math_verify()
            _WORKER = MathVerifyWorker()
        return _WORKER
