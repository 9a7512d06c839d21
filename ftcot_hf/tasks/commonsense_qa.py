"""CommonsenseQA (Talmor et al., 2019), v1.11 random split: 9,741 train + 1,221 dev questions, five options.

Records: ``stem.strip() + " Answer choices: (A) .., (B) .."`` + ``"."`` with each choice text stripped (one train
choice reads "ice cream "); answer ``answerKey``. Train then dev; the dev
set is the test split (the official test set has no labels).
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, choice_record, kojima, numbered
from ftcot_hf.tasks.answers import ChoiceAnswer
from ftcot_hf.tasks.source import OrderedSplit, TaskSource
from ftcot_hf.tasks.sources import field, read_jsonl
from ftcot_hf.tasks.task import Task

SOURCES = {
    "train": kojima(
        "dataset/CommonsenseQA/train_rand_split.jsonl",
        "58ffa3c8472410e24b8c43f423d89c8a003d8284698a6ed7874355dedd09a2fb",
        "MIT",
    ),
    "test": kojima(
        "dataset/CommonsenseQA/dev_rand_split.jsonl",
        "3210497fdaae614ac085d9eb873dd7f4d49b6f965a93adadc803e1229fd8a02a",
        "MIT",
    ),
}


def _records(path):
    for lineno, ex in enumerate(read_jsonl(path), start=1):
        where = f"line {lineno}"
        q = field(ex, "question", path=path, where=where)
        stem = field(q, "stem", path=path, where=f"{where} .question")
        choices = [
            field(c, "text", path=path, where=f"{where} choice").strip()
            for c in field(q, "choices", path=path, where=f"{where} .question")
        ]
        yield choice_record(stem.strip(), choices, field(ex, "answerKey", path=path, where=where))


def build(paths):
    return numbered(_records(paths["train"]), _records(paths["test"]))


TASK = Task(
    name="commonsense_qa",
    title="CommonsenseQA",
    answer=ChoiceAnswer("ABCDE"),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=10962,
        split=OrderedSplit(train_size=9741),
    ),
    description=__doc__,
    license="MIT",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://www.tau-nlp.sites.tau.ac.il/commonsenseqa",
    has_choices=True,
    kojima_trigger="\nTherefore, among A through E, the answer is",
    label="CSQA",
    paper_column=10,
)
