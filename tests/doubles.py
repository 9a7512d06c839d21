"""Test doubles and helpers the suite shares: stub teachers (scripted replies, every request recorded), tiny
records to teach or train on, and the `ftcot` command-line checks (argv builders, "exit 2 with one line").

A test that needs a teacher of its own subclasses :class:`StubTeacher` and writes only :meth:`StubTeacher.reply`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from ftcot_hf.cli import main
from ftcot_hf.teachers.base import Generation, Request, Teacher

if TYPE_CHECKING:
    from ftcot_hf.pipeline import RunConfig


# -- stub teachers ----------------------------------------------------------------------------------------------------
class StubTeacher(Teacher):
    """A teacher that answers each request with :meth:`reply`; every request it was sent is in ``requests``, in
    the order it was sent."""

    backend, model = "stub", "stub-v1"

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        for pos, request in enumerate(requests):
            self.requests.append(request)
            yield pos, self.reply(request)

    def reply(self, request: Request) -> list[Generation]:
        """The ``request.n`` samples of ``request`` (from sample ``request.first_index``)."""
        raise NotImplementedError


class NumberedTeacher(StubTeacher):
    """Sample j of prompt p is ``f"{p} #{j}"``: what the request cache stored, served or asked again shows in the
    text."""

    backend, model = "numbered", "numbered-v1"

    def reply(self, request: Request) -> list[Generation]:
        return [Generation(f"{request.prompt} #{request.first_index + j}", "stop", 1, 1) for j in range(request.n)]


class EchoTeacher(StubTeacher):
    """Stage 1: a rationale naming the sum of the question's last two numbers (``" I think it is 7."``); stage 2:
    that sum. Right on ``What is a plus b?`` questions (:data:`ARITH`)."""

    backend, model = "echo", "echo-v1"

    def reply(self, request: Request) -> list[Generation]:
        if "Therefore" in request.prompt:
            said = request.prompt.split("I think it is ")[-1].split(".")[0]
            return [Generation(f" {said}.", "stop", 5, 2)]
        return [Generation(f" I think it is {self.guess(request.prompt)}.", "stop", 5, 4) for _ in range(request.n)]

    @staticmethod
    def guess(prompt: str) -> str:
        numbers = [int(w.strip("?")) for w in prompt.split() if w.strip("?").isdigit()]
        return str(sum(numbers[-2:])) if len(numbers) >= 2 else "0"


class ScriptedTeacher(StubTeacher):
    """A deterministic stand-in for a model on :func:`scripted_records`: rationale j of a question is correct when
    (j + hash of its prompt) is even, cut (``length``) when j is a multiple of 5; stage 2 answers the gold answer
    the rationale names when it is the RIGHT one; Teacher-LM annotation prompts get one fixed sentence."""

    backend, model = "scripted", "scripted-v1"

    def reply(self, r: Request) -> list[Generation]:
        gens = []
        for j in range(r.first_index, r.first_index + r.n):
            if "Therefore" in r.prompt:
                right = "RIGHT" in r.prompt
                gold = r.prompt.split("GOLD=")[1].split(".")[0]
                other = "no" if gold == "yes" else "yes"
                gens.append(Generation(f" {gold if right else other}.", "stop", 10, 2))
            elif "Fundamentals:" in r.prompt or "Common errors:" in r.prompt:
                gens.append(Generation(" Parity of the number of flips.", "stop"))
            else:
                h = int(hashlib.sha256(r.prompt.encode()).hexdigest(), 16)
                tag = "RIGHT" if (j + h) % 2 == 0 else "WRONG"
                gold = r.prompt.split("[gold:")[1].split("]")[0]
                gens.append(Generation(f" Rationale {j} {tag} GOLD={gold}.", "stop" if j % 5 else "length"))
        return gens


# -- records ----------------------------------------------------------------------------------------------------------
def scripted_records(n: int = 6) -> Dataset:
    """``n`` coin questions that carry their gold answer (``Coin question 3 [gold:no]``), for :class:`ScriptedTeacher`
    and its kin."""
    answers = ["yes", "no"] * (n // 2)
    return Dataset.from_dict({
        "sample_index": list(range(n)),
        "question": [f"Coin question {i} [gold:{a}]" for i, a in enumerate(answers)],
        "answer": answers,
        "rationale": [None] * n,
    })  # fmt: skip


NAMES = ["Whitney", "Erika", "Tj", "Benito", "Caleb", "Chase", "Chanel"]


def coin_records(n: int, seed: int = 0) -> Dataset:
    """A synthetic coin-flip task to train on: the answer is the parity of the flips, the rationale counts them."""
    rng = random.Random(seed)
    rows: dict[str, list] = {"sample_index": [], "question": [], "answer": [], "rationale": [], "correct": []}
    for i in range(n):
        flips = rng.randint(0, 3)
        people = rng.sample(NAMES, flips)
        q = "A coin is heads up. " + " ".join(f"{p} flips the coin." for p in people) + " Is the coin still heads up?"
        rows["sample_index"].append(i)
        rows["question"].append(q)
        rows["answer"].append("yes" if flips % 2 == 0 else "no")
        rows["rationale"].append(
            f"The coin was flipped {flips} times, so it is {'heads' if flips % 2 == 0 else 'tails'} up."
        )
        rows["correct"].append(True)
    return Dataset.from_dict(rows)


ARITH = [(f"What is {a} plus {b}?", str(a + b)) for a, b in zip(range(1, 21), range(3, 23), strict=True)]
ARITH[0] = ("A toy costs 1,000 dollars and another 234. Total?", "$1,234")
ARITH[1] = ("Half of 6?", "3.0")
"""A user's arithmetic dataset (``problem``/``solution``), with a thousands separator and a float among its golds."""


def installed_entry_point(site: Path, group: str, name: str, value: str) -> Path:
    """A package "installed" in the folder ``site`` declaring ``[group] name = value`` (its ``.dist-info``), as
    ``importlib.metadata`` finds it once ``site`` is on sys.path (the caller prepends it); returns ``site``."""
    dist = value.partition(":")[0].replace(".", "_")
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")
    return site


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- teaching and runs ----------------------------------------------------------------------------------------------
def teach_user_dataset(data: Path, out: Path, teacher: Teacher | None = None, **fields: Any) -> Path:
    """`ftcot teach`, in this process, of a user's :data:`ARITH`-shaped dataset file by ``teacher`` (default an
    :class:`EchoTeacher`), every row kept, into ``out`` (the request cache beside it); ``fields``: TeachConfig fields
    over those. Returns the rationale folder."""
    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    config = TeachConfig(**{"dataset": str(data), "question_column": "problem", "answer_column": "solution",
                            "answer_type": "number", "task_name": "my_arith", "keep": "all", "output_dir": str(out),
                            "cache_dir": str(out.parent / "c.sqlite"), **fields})  # fmt: skip
    tasks = config.resolve_tasks()
    results, reports = teach(config, tasks=tasks, teacher=(teacher or EchoTeacher(), "generic"))
    return save_rationales(config, results, reports, tasks)


def small_run(tmp: Path, student: Path, mirror: Path, **overrides: Any) -> RunConfig:
    """An `ftcot run` config that takes seconds: 12 train and 3 test questions of the default task, a few tokens per
    completion, one CPU thread, its folders under ``tmp``."""
    from ftcot_hf.pipeline import RunConfig

    values = dict(student=str(student), limit_train=12, limit_test=3, eval_max_new_tokens=6, eval_batch_size=4,
                  output_dir=str(tmp / "run"), cache_dir=str(tmp / "teacher.sqlite"), data_dir=str(mirror),
                  cpu_threads=1)  # fmt: skip
    return RunConfig(**values | overrides)


# -- the command line -------------------------------------------------------------------------------------------------
def user_teach_argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    """``ftcot teach`` over a user's :data:`ARITH`-shaped dataset (a quarter of it held out)."""
    return ["teach", "--dataset", str(dataset), "--question_column", "problem", "--answer_column", "solution",
            "--answer_type", "number", "--task_name", "my_arith", "--test_size", "0.25", "--output_dir", str(out),
            *extra]  # fmt: skip


def openai_teach_argv(
    base_url: str, out: Path, cache: Path, mirror: Path, *extra: str, limit: int | None = None
) -> list[str]:
    """``ftcot teach`` of coin_flip (its first ``limit`` questions) by the ``openai`` teacher at ``base_url`` (a fake
    server's: model ``fake-model``), the sources from the offline ``mirror``, ``extra`` flags, and the output folder
    last (``argv[-1]``: a test may point it elsewhere)."""
    first = ["--limit", str(limit)] if limit is not None else []
    return ["teach", "--tasks", "coin_flip", *first, "--teacher", "openai", "--model", "fake-model",
            "--base_url", base_url, "--data_dir", str(mirror), "--cache_dir", str(cache), *extra,
            "--output_dir", str(out)]  # fmt: skip


def error_line(err: str, needle: str, prefix: str = "ftcot: error:") -> str:
    """The one line of ``err`` that holds ``prefix`` (from there on: a progress bar left open may precede it on
    the same terminal line); it must say ``needle``, and no traceback may be anywhere."""
    lines = [line[line.index(prefix) :] for line in err.splitlines() if prefix in line]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err[-3000:]
    return lines[0]


def exits_2_in_one_line(argv: list[str], capsys, needle: str, *, alone: bool = True) -> str:
    """``ftcot <argv>`` exits 2 and says why in one line holding ``needle``: the whole of stderr (``alone``), or
    its one error line beside progress bars (``alone=False``). Returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    if alone:
        assert len(err.strip().splitlines()) == 1, err
    return error_line(err, needle)
