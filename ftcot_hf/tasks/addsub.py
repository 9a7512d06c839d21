"""AddSub (Hosseini et al., 2014, via MAWPS): 395 addition/subtraction word problems.

Records: ``sQuestion.strip()``, answer ``str(lSolutions[0])`` (the file stores strings: "43").
Split: random 70:30 (276/119). Answers compare as floats.
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, kojima, mawps_records
from ftcot_hf.tasks.answers import NumberAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/AddSub/AddSub.json",
        "21930fa90385c72b5a15f4b9a4dda27276b889ae9ff44285505cdd9fa0a20df8",
        "unknown (MAWPS; no licence stated)",
    )
}


def build(paths):
    return mawps_records(paths, strip=True, answer=str)


TASK = Task(
    name="addsub",
    title="AddSub",
    answer=NumberAnswer(),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=395,
        split=RandomSplit(),
    ),
    description=__doc__,
    license=SOURCES["data"].license,
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/sroy9/mawps",
    kojima_trigger="\nTherefore, the answer (arabic numerals) is",
    label="AddSub",
    paper_column=1,
)
