"""MultiArith (Roy & Roth, 2015, via MAWPS): 600 multi-step arithmetic word problems.

Records: ``sQuestion.strip()``, answer ``str(int(lSolutions[0]))`` ("39"). Split: random 70:30 (420/180), plus the
paper's template-wise split (appendix ablation, 413/187) read from its published split file. 20 question/answer
pairs are exact duplicates and 5 of them straddle train and test: reported, not "fixed", to keep the paper's split.
Answers compare as strings in paper mode ("39.0" != "39").
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, kojima, mawps_records, rt_split
from ftcot_hf.tasks.answers import NumberAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/MultiArith/MultiArith.json",
        "dc9db1b6cc68b1ecc2dec830d15aaf8c9a0932aa31d5ffce88ef3628179d36f4",
        "unknown (MAWPS; no licence stated)",
    )
}


def build(paths):
    return mawps_records(paths, strip=True, answer=lambda solution: str(int(solution)))


TASK = Task(
    name="multiarith",
    title="MultiArith",
    answer=NumberAnswer(exact_string=True),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=600,
        split=RandomSplit(),
        template_split=rt_split(
            "multiarith", "template", "188abcfb1358424791e2d9c8d622ad10356283405fab11e1a58fa374cd9a48f4"
        ),
    ),
    description=__doc__,
    license=SOURCES["data"].license,
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/sroy9/mawps",
    kojima_trigger="\nTherefore, the answer (arabic numerals) is",
    label="MultiArith",
    paper_column=2,
)
