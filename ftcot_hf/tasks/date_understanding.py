"""Date Understanding (BIG-bench): 369 questions about dates with six options.

Records: ``input.strip() + "\\nWhich choice is true?"`` then the options, shuffled with ONE
``numpy.random.RandomState(0)`` shared across all examples in file order (per example ``perm = rs.permutation(n)``,
option j moves to position perm[j]); each option's trailing "." removed. Split: random 70:30 (258/111), plus the
paper's template-wise split (261/108) from its published split file.
"""

import numpy as np

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, bigbench_choice_records, kojima, rt_split
from ftcot_hf.tasks.answers import ChoiceAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/Bigbench_Date/task.json",
        "ff716f0e399109146db3a998281c39954907b78268a9b633a95582d63847822f",
        "Apache-2.0",
    ),
}


def build(paths):
    rs = np.random.RandomState(0)  # one generator for the whole file, as the reference shuffles

    def shuffle(original: list[str]) -> list[str]:
        perm = rs.permutation(len(original))
        shuffled = [""] * len(original)
        for j, choice in enumerate(original):
            shuffled[perm[j]] = choice
        return shuffled

    return bigbench_choice_records(paths, strip_input=True, order=shuffle)


TASK = Task(
    name="date_understanding",
    title="Date Understanding",
    answer=ChoiceAnswer("ABCDEF"),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=369,
        split=RandomSplit(),
        template_split=rt_split(
            "date_understanding", "template", "9b4508734ffc2ae908615e3f9f6ca3c9e27f44e4b5e714d220bd7152ddd39d89"
        ),
    ),
    description=__doc__,
    license="Apache-2.0",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/google/BIG-bench/tree/main/bigbench/benchmark_tasks/date_understanding",
    has_choices=True,
    kojima_trigger="\nTherefore, among A through F, the answer is",
    label="Date",
    paper_column=6,
)
