"""Run inside vLLM's own venv (``$FTCOT_VLLM_PYTHON``, with PYTHONPATH = this repository): our ``vllm`` teacher on the
real ``vllm.LLM``, behind the request cache, and print what it did as one JSON line (read by
``tests/test_real_servers.py::test_vllm_offline_engine``).

    $FTCOT_VLLM_PYTHON tests/vllm_offline_check.py MODEL_FOLDER CACHE.sqlite

Our modules it needs are light (teachers.base/cache/vllm: the standard library and vLLM), so that venv needs neither
datasets nor TRL. The ``__main__`` guard is required: vLLM starts its engine core in a spawned process, which imports
the main module again.
"""

from __future__ import annotations

import json
import sys
import time


def main(model: str, cache: str) -> dict:
    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.cache import CachedTeacher
    from ftcot_hf.teachers.vllm import VLLMTeacher

    start = time.perf_counter()
    teacher = VLLMTeacher(model, name="smollm2", enforce_eager=True, max_model_len=2048)
    startup = time.perf_counter() - start
    greedy = SamplingParams(max_tokens=24, stop=("\n\n",))
    sampled = SamplingParams(temperature=0.8, max_tokens=12, seed=7)
    requests = [
        Request("Q: A coin is heads up. Ka flips the coin. Is the coin still heads up?\nA: Let's think step by step.",
                greedy),  # fmt: skip
        Request("Q: What is 2 + 3?\nA: Let's think step by step.", sampled, n=4),
        Request("What is the capital of France? Answer in one word.", greedy, chat=True),
        Request("Q: What is 2 + 3?\nA: Let's think step by step.", sampled, n=2, first_index=2, chat=False),
        Request("word " * 3000, greedy),  # longer than max_model_len: vLLM refuses it
    ]
    cached = CachedTeacher(teacher, cache)
    cached.keep_going = True
    order, out = [], {}
    for pos, gens in cached.generate(requests[:3] + requests[4:]):
        order.append(pos)
        out[pos] = {"error": str(gens.error)} if hasattr(gens, "error") else [g.__dict__ for g in gens]
    # the tail of the seeded request, asked alone after: vLLM must give choices 2..3 again, not 0..1
    [(_, tail)] = list(teacher.generate([requests[3]]))
    again = CachedTeacher(teacher, cache)
    replay = {pos: [g.__dict__ for g in gens] for pos, gens in again.generate(requests[:3])}
    teacher.close()
    return {"startup_s": startup, "order": order, "out": out, "tail": [g.__dict__ for g in tail],
            "calls": cached.calls, "calls_again": again.calls, "replay_same": replay == {p: out[p] for p in range(3)}}


if __name__ == "__main__":
    print("FTCOT-CHECK " + json.dumps(main(sys.argv[1], sys.argv[2])))  # vLLM logs to stdout too
