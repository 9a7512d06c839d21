"""SVAMP (Patel et al., 2021): 1,000 arithmetic word problems with structural variations.

Records: ``Body.strip() + " " + Question.strip()``, answer ``str(Answer)`` ("51.0"). Split: random 70:30 (700/300).
Answers compare as floats.
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, kojima, record
from ftcot_hf.tasks.answers import NumberAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.sources import field, read_json
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/SVAMP/SVAMP.json", "5be77703a6d891ae476d7c082787ad361392aa02453b132516cdd5f4e7934e3e", "MIT"
    )
}


def build(paths):
    path = paths["data"]
    for i, ex in enumerate(read_json(path)):
        where = f"item {i}"
        body = field(ex, "Body", path=path, where=where).strip()
        question = field(ex, "Question", path=path, where=where).strip()
        yield i, record(f"{body} {question}", str(field(ex, "Answer", path=path, where=where)))


TASK = Task(
    name="svamp",
    title="SVAMP",
    answer=NumberAnswer(),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=1000,
        split=RandomSplit(),
    ),
    description=__doc__,
    license="MIT",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/arkilpatel/SVAMP",
    kojima_trigger="\nTherefore, the answer (arabic numerals) is",
    label="SVAMP",
    paper_column=5,
)
