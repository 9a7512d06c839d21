"""SingleEq (Koncel-Kedziorski et al., 2015, via MAWPS): 508 single-equation algebra word problems.

Records: ``sQuestion`` as is (not stripped, unlike AddSub/MultiArith), answer ``str(lSolutions[0])`` ("43.0").
Split: random 70:30 (356/152). Answers compare as floats.
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, kojima, mawps_records
from ftcot_hf.tasks.answers import NumberAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/SingleEq/questions.json",
        "051507bd2b489c257057b485774a83d2710c23a4bc0f4a58e1822ae2773ef05e",
        "unknown (MAWPS; no licence stated)",
    )
}


def build(paths):
    return mawps_records(paths, strip=False, answer=str)


TASK = Task(
    name="single_eq",
    title="SingleEq",
    answer=NumberAnswer(),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=508,
        split=RandomSplit(),
    ),
    description=__doc__,
    license=SOURCES["data"].license,
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/sroy9/mawps",
    kojima_trigger="\nTherefore, the answer (arabic numerals) is",
    label="SingleEq",
    paper_column=0,
)
