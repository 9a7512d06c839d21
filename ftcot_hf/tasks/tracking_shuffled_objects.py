"""Tracking Shuffled Objects, three objects (BIG-bench): 750 questions, three options.

Records: ``input`` NOT stripped (it ends "has the ") + ``"\\nWhich choice is true?"`` + the options in file order
(no shuffling), each option's trailing "." removed. Split: random 70:30 (525/225). In paper mode every capital A-C in
the completion is a candidate (the "A" of "Answer" counts), as in the reference.
"""

from ftcot_hf.tasks._common import FINE_TUNE_COT_CITATION, bigbench_choice_records, kojima
from ftcot_hf.tasks.answers import ChoiceAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/Bigbench_object_tracking/task.json",
        "74b74d3c8827c0387a3f24ee9efa7edd90b2d53af3daacb9961341af66f750a0",
        "Apache-2.0",
    ),
}


def build(paths):
    return bigbench_choice_records(paths, strip_input=False)


TASK = Task(
    name="tracking_shuffled_objects",
    title="Tracking Shuffled Objects",
    answer=ChoiceAnswer("ABC"),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=750,
        split=RandomSplit(),
    ),
    description=__doc__,
    license="Apache-2.0",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://github.com/google/BIG-bench/tree/main/bigbench/benchmark_tasks/tracking_shuffled_objects",
    has_choices=True,
    kojima_trigger="\nTherefore, among A through C, the answer is",
    label="Shuffled",
    paper_column=7,
)
