"""AQuA-RAT (Ling et al., 2017): algebra word problems with five answer options and a human rationale.

Records: options ``"A)x"`` -> ``"x"``; question ``question.strip() + " Answer choices: (A) x, ..., (E) z."``; answer
the correct letter; rationale kept. The compiled task is the 97,467-question train file, then the 254 test questions
(sample_index 97467..97720). Split: the paper trains on sorted(RandomState(0).permutation(97467)[:10000]) and tests on
the 254 test questions.

The train file is not redistributed by Kojima et al. and is big; it is an *optional* source: without it only the test
split is built, and a warning names the file and its public URL. Its sha256 is not pinned here (no copy was available
when this task was written): the file is checked structurally (97,467 records) and its digest is logged.
"""

import re

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, choice_record, kojima, raise_format
from ftcot_hf.tasks.answers import ChoiceAnswer
from ftcot_hf.tasks.source import SubsampledTrainSplit, TaskSource
from ftcot_hf.tasks.sources import SourceFile, field, read_jsonl
from ftcot_hf.tasks.task import Task

TRAIN_SIZE = 97467

SOURCES = {
    "train": SourceFile("deepmind/AQuA", "26b64ed1f22208c6742f47df547dfd65088ec30d", "train.json", None, "Apache-2.0"),
    "test": kojima(
        "dataset/AQuA/test.json", "de41581881ef95c5588c44ddc701c77fd480839241dd422a0d181262af24520c", "Apache-2.0"
    ),
}

_OPTION = re.compile(r"^[A-E]\)")


def _records(path):
    for lineno, ex in enumerate(read_jsonl(path), start=1):
        where = f"line {lineno}"
        options = field(ex, "options", path=path, where=where)
        choices = []
        for option in options:
            if not _OPTION.match(option):
                raise_format(path, f"line {lineno}: option {option!r} does not start with a letter and ')'")
            choices.append(option[2:])
        yield choice_record(
            field(ex, "question", path=path, where=where).strip(),
            choices,
            field(ex, "correct", path=path, where=where),
            field(ex, "rationale", path=path, where=where),
        )


def build(paths):
    if paths.get("train") is not None:
        n = 0
        for n, rec in enumerate(_records(paths["train"]), start=1):
            yield n - 1, rec
        if n != TRAIN_SIZE:
            raise_format(paths["train"], f"expected {TRAIN_SIZE} AQuA train questions, found {n}")
    for i, rec in enumerate(_records(paths["test"])):
        yield TRAIN_SIZE + i, rec


TASK = Task(
    name="aqua",
    title="AQuA",
    answer=ChoiceAnswer("ABCDE"),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=TRAIN_SIZE + 254,
        split=SubsampledTrainSplit(train_size=TRAIN_SIZE, n=10000),
        has_rationale=True,
        optional_sources=frozenset({"train"}),
    ),
    description=__doc__,
    license="Apache-2.0",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/deepmind/AQuA",
    has_choices=True,
    kojima_trigger="\nTherefore, among A through E, the answer is",
    label="AQUA",
    paper_column=4,
)
