"""StrategyQA (Geva et al., 2021), BIG-bench version: 2,290 yes/no questions needing implicit multi-hop reasoning.

Records: ``input.strip()``; answer "Yes"/"No" (from target_scores); rationale = ``target`` minus its leading
"Yes. "/"No. ", stripped. Split: random 70:30 (1603/687). Gold answers are lowercased before comparison.
"""

from ftcot_hf.tasks._common import (
    FINE_TUNE_COT_CITATION,
    bigbench_examples,
    correct_choice,
    kojima,
    raise_format,
    record,
)
from ftcot_hf.tasks.answers import YesNoAnswer
from ftcot_hf.tasks.source import RandomSplit, TaskSource
from ftcot_hf.tasks.sources import field
from ftcot_hf.tasks.task import Task

SOURCES = {
    "data": kojima(
        "dataset/StrategyQA/task.json",
        "60af9081fed20102fd8bb1e02dc7d9f12238efcba33e4c1a56b4d61cb6409803",
        "MIT (BIG-bench: Apache-2.0)",
    ),
}


def build(paths):
    path = paths["data"]
    for i, ex in enumerate(bigbench_examples(path)):
        answer = correct_choice(ex, path, i)
        target = field(ex, "target", path=path, where=f"example {i}")
        if not target.startswith(f"{answer}. "):
            raise_format(path, f"example {i}: target does not start with {answer + '. '!r}")
        question = field(ex, "input", path=path, where=f"example {i}").strip()
        yield i, record(question, answer, target[len(answer) + 2 :].strip())


TASK = Task(
    name="strategy_qa",
    title="StrategyQA",
    answer=YesNoAnswer(lower_gold=True),
    source=TaskSource(
        sources=SOURCES,
        build=build,
        size=2290,
        split=RandomSplit(),
        has_rationale=True,
    ),
    description=__doc__,
    license="MIT",
    citation=FINE_TUNE_COT_CITATION,
    homepage="https://allenai.org/data/strategyqa",
    kojima_trigger="\nTherefore, the answer (Yes or No) is",
    label="StrategyQA",
    paper_column=11,
)
