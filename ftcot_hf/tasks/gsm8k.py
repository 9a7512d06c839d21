"""GSM8K (Cobbe et al., 2021): 7,473 train + 1,319 test grade-school math problems.

Records: ``question``; answer = the text after ``"#### "`` (a string, commas kept: "1,000"); rationale = the human
solution before ``"####"``. Train (openai/grade-school-math ``train.jsonl``) first, then test. Split: the original
train/test. Answers compare as strings in paper mode.
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, kojima, numbered, raise_format, record
from ftcot_hf.tasks.answers import NumberAnswer
from ftcot_hf.tasks.source import OrderedSplit, TaskSource
from ftcot_hf.tasks.sources import SourceFile, field, read_jsonl
from ftcot_hf.tasks.task import Task

SOURCES = {
    "train": SourceFile(
        "openai/grade-school-math",
        "3101c7d5072418e28b9008a6636bde82a006892c",
        "grade_school_math/data/train.jsonl",
        "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
        "MIT",
    ),
    "test": kojima(
        "dataset/grade-school-math/test.jsonl",
        "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        "MIT",
    ),
}


def _records(path):
    for lineno, ex in enumerate(read_jsonl(path), start=1):
        solution = field(ex, "answer", path=path, where=f"line {lineno}")
        if "#### " not in solution:
            raise_format(path, f"line {lineno}: the answer field has no '#### ' final-answer marker")
        reasoning, answer = solution.split("#### ", 1)
        yield record(field(ex, "question", path=path, where=f"line {lineno}"), answer, reasoning)


def build(paths):
    return numbered(_records(paths["train"]), _records(paths["test"]))


TASK = Task(
    name="gsm8k",
    title="GSM8K",
    answer=NumberAnswer(exact_string=True),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=8792,
        split=OrderedSplit(train_size=7473),
        has_rationale=True,
    ),
    description=__doc__,
    license="MIT",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/openai/grade-school-math",
    kojima_trigger="\nTherefore, the answer (arabic numerals) is",
    label="GSM8K",
    paper_column=3,
)
