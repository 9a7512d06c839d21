"""Train <-> test overlap: exact, 8-gram (open-r1), rationales quoting test questions; `ftcot decontaminate`."""

from __future__ import annotations

import json

import datasets
import pytest

from ftcot_hf import load_task
from ftcot_hf.cli import main
from ftcot_hf.teach.decontamination import (
    decontamination_report,
    drop_overlap,
    flagged_ids,
    normalize,
    word_ngrams,
)

MULTIARITH_DUPLICATES = {(48, 58), (50, 40), (51, 41), (52, 42), (342, 352)}
"""MultiArith's train/test duplicate pairs (train sample_index, test sample_index)."""


@pytest.fixture(scope="module")
def multiarith():
    return load_task("multiarith")


def _rows(questions, start=0):
    return [{"sample_index": start + i, "question": q, "answer": "1"} for i, q in enumerate(questions)]


def _dataset(train, test):
    return datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(_rows(train)), "test": datasets.Dataset.from_list(_rows(test, 100))}
    )


def test_normalize_and_ngrams():
    assert normalize("  How MANY apples,\n do you have?! ") == "how many apples do you have"
    assert word_ngrams("a b c", 2) == {"a b", "b c"}
    assert word_ngrams("too short", 8) == set()


def test_multiarith_duplicate_pairs(multiarith):
    report = decontamination_report("multiarith", dataset=multiarith)
    pairs = {(p["train"], p["test"]) for p in report["exact"]["pairs"]}
    assert pairs == MULTIARITH_DUPLICATES
    assert report["exact"]["count"] == 5
    assert report["exact"]["test_ids"] == sorted(t for _, t in MULTIARITH_DUPLICATES)
    near = set(report["ngram_overlap"]["near_duplicate_train_ids"])
    assert {a for a, _ in MULTIARITH_DUPLICATES} <= near  # every exact duplicate is an 8-gram near-duplicate too
    kept = drop_overlap(multiarith["train"], report)
    assert kept.num_rows == multiarith["train"].num_rows - 5
    assert not {a for a, _ in MULTIARITH_DUPLICATES} & set(kept["sample_index"])


def test_ngram_overlap_and_rationales():
    test_q = "Sam had nine red balloons and gave four of them to his friend Tom yesterday."
    ds = _dataset(
        [
            "sam had nine red balloons and gave four of them away. How many now?",  # shares 8-grams
            "A completely different question about trains and their speed.",
            "SAM had nine red balloons, and gave four of them to his friend Tom yesterday",  # exact after normalise
        ],
        [test_q, "Short one?"],
    )
    rationales = datasets.Dataset.from_list(
        [
            {"sample_index": 1, "rationale": f"The question was: {test_q} So the answer is 5."},
            {"sample_index": 1, "rationale": "Trains go fast."},
        ]
    )
    report = decontamination_report("multiarith", dataset=ds, rationales=rationales)
    assert report["exact"]["pairs"] == [{"train": 2, "test": 100}]
    assert report["ngram_overlap"]["train_ids"] == [0, 2]
    assert report["ngram_overlap"]["near_duplicate_train_ids"] == [2]
    assert report["rationales"]["n"] == 2 and report["rationales"]["count"] == 1
    assert report["rationales"]["train_ids"] == [1] and report["rationales"]["test_ids"] == [100]
    assert report["flagged_train_ids"] == [0, 1, 2]
    assert flagged_ids(report, ["exact"]) == [2]
    assert flagged_ids(report, ["ngram", "rationales"]) == [0, 1, 2]
    assert drop_overlap(ds["train"], report, ["ngram"])["sample_index"] == [1]
    with pytest.raises(ValueError, match="Unknown decontamination check"):
        flagged_ids(report, ["fuzzy"])
    json.dumps(report)  # JSON-ready


def test_cli(tmp_path, multiarith, capsys):
    folder = tmp_path / "rationales" / "multiarith"
    folder.mkdir(parents=True)
    test_question = multiarith["test"][0]["question"]
    datasets.Dataset.from_list(
        [
            {"sample_index": 0, "question": "q", "rationale": f"Restating: {test_question}"},
            {"sample_index": 1, "question": "q", "rationale": "Nothing to see."},
            {"sample_index": 48, "question": "q", "rationale": "A duplicate's rationale."},
        ]
    ).to_parquet(str(folder / "train-00000-of-00001-abc.parquet"))
    out = tmp_path / "clean"
    rc = main(
        [
            "decontaminate",
            "--tasks",
            "multiarith",
            "--rationales",
            str(tmp_path / "rationales"),
            "--drop_overlap",
            str(out),
            "--drop_on",
            "exact",
            "rationales",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "multiarith" in printed and "48~58" in printed
    report = json.loads((out / "decontamination.json").read_text())[0]
    assert {(p["train"], p["test"]) for p in report["exact"]["pairs"]} == MULTIARITH_DUPLICATES
    assert report["rationales"]["train_ids"] == [0] and report["dropped_train_rows"] == 2
    kept = datasets.load_dataset("parquet", data_files=str(out / "multiarith" / "train-*.parquet"), split="train")
    assert kept["sample_index"] == [1]


def test_cli_unknown_task(capsys):
    assert main(["decontaminate", "--tasks", "multiarithh"]) == 2
    assert "multiarith" in capsys.readouterr().err


def test_ftcot_teach_states_the_overlap_in_its_yield_report_and_card(mirror, tmp_path):
    import json

    from ftcot_hf.cli import main

    out = tmp_path / "out"
    # the taught questions are checked (--limit bounds the check too): the first 60 hold 4 of the 5 duplicates
    assert main(["teach", "--tasks", "multiarith", "--limit", "60", "--data_dir", str(mirror),
                 "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out)]) == 0  # fmt: skip
    d = json.loads((out / "yield_report.json").read_text())["reports"][0]["decontamination"]
    assert d["n_train"] == 60
    assert d["exact"] == 4 and sorted(map(tuple, d["exact_pairs"])) == sorted([(48, 58), (50, 40), (51, 41), (52, 42)])
    card = (out / "README.md").read_text()
    assert "## Decontamination" in card and "| multiarith | 4 (" in card and "48~58" in card
    assert not list(tmp_path.glob(".out.partial-*"))  # the rows staged while teaching are gone once saved
