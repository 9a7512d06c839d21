"""The built records equal the reference implementation's compiled datasets, and the splits its split files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ftcot_hf import TASKS, get_task

# Task -> compiled reference file (gsm8k: the reference published its test part only).
REFERENCE_FILES = {
    "single_eq": "single_eq.json",
    "addsub": "addsub.json",
    "multiarith": "multiarith.json",
    "gsm8k": "gsm8k_test_only.json",
    "svamp": "svamp.json",
    "date_understanding": "date_understanding.json",
    "tracking_shuffled_objects": "tracking_shuffled_objects.json",
    "last_letter_concatenation": "last_letter_concatenation.json",
    "coin_flip": "coin_flip.json",
    "commonsense_qa": "commonsense_qa.json",
    "strategy_qa": "strategy_qa.json",
}
SPLIT_FILES = [
    ("addsub", "default"),
    ("aqua", "default"),
    ("coin_flip", "default"),
    ("commonsense_qa", "default"),
    ("date_understanding", "default"),
    ("date_understanding", "template"),
    ("gsm8k", "default"),
    ("last_letter_concatenation", "default"),
    ("multiarith", "default"),
    ("multiarith", "template"),
    ("single_eq", "default"),
    ("strategy_qa", "default"),
    ("svamp", "default"),
    ("tracking_shuffled_objects", "default"),
]
SPEC_SIZES = {  # SPEC §1
    "single_eq": 508,
    "addsub": 395,
    "multiarith": 600,
    "gsm8k": 8792,
    "aqua": 97721,
    "svamp": 1000,
    "tracking_shuffled_objects": 750,
    "date_understanding": 369,
    "coin_flip": 500,
    "last_letter_concatenation": 500,
    "commonsense_qa": 10962,
    "strategy_qa": 2290,
}


def _all_rows(ds) -> dict[int, dict]:
    return {row["sample_index"]: row for split in ds.values() for row in split}


def test_registry_has_the_twelve_paper_tasks_in_order():
    assert list(TASKS) == [
        "single_eq",
        "addsub",
        "multiarith",
        "gsm8k",
        "aqua",
        "svamp",
        "date_understanding",
        "tracking_shuffled_objects",
        "last_letter_concatenation",
        "coin_flip",
        "commonsense_qa",
        "strategy_qa",
    ]
    assert {name: task.source.size for name, task in TASKS.items()} == SPEC_SIZES


@pytest.mark.parametrize("task", sorted(REFERENCE_FILES))
def test_records_equal_reference_compiled_dataset(task, built, reference_dir):
    reference = json.loads((reference_dir / "initial_commit_5a5104a/dataset" / REFERENCE_FILES[task]).read_text())
    rows = _all_rows(built(task))
    offset = 7473 if task == "gsm8k" else 0
    assert len(rows) == TASKS[task].source.size
    assert sorted(rows) == list(range(TASKS[task].source.size))
    mismatches = []
    for i, ref in enumerate(reference):
        row = rows[offset + i]
        ours = {"question": row["question"], "answer": row["answer"]}
        if "rationale" in ref:
            ours["rationale"] = row["rationale"]
        if "reasoning" in ref:
            ours["reasoning"] = row["rationale"]
        if ours != ref:
            mismatches.append((offset + i, ours, ref))
    assert not mismatches, f"{len(mismatches)} records differ, first: {mismatches[0]}"


def test_records_without_a_source_rationale_have_none(built):
    rows = _all_rows(built("coin_flip"))
    assert all(r["rationale"] is None for r in rows.values())


@pytest.mark.parametrize("task,variant", SPLIT_FILES)
def test_split_indices_equal_reference_split_files(task, variant, built, reference_dir):
    expected = json.loads((reference_dir / "data/split" / f"{task}__{variant}.json").read_text())
    spec = get_task(task).source
    template = reference_dir / "data/split" / f"{task}__{variant}.json" if variant == "template" else None
    assert spec.split_indices(variant, template) == {"train": expected["train"], "test": expected["test"]}
    ds = built(task, variant)
    assert ds["test"]["sample_index"] == expected["test"]
    if task == "aqua":
        assert "train" not in ds  # the mirror has no AQuA train.json
    else:
        assert ds["train"]["sample_index"] == expected["train"]


@pytest.mark.parametrize("n", [8, 32, 128])
def test_few_shot_variant_is_paper_subsample_of_default_train(n, built):
    default, few = built("svamp"), built("svamp", f"{n}shot")
    train = default["train"]["sample_index"]
    expected = sorted(np.random.RandomState(0).permutation(train)[:n].tolist())
    assert few["train"]["sample_index"] == expected
    assert few["test"]["sample_index"] == default["test"]["sample_index"]


def test_unregistered_shot_count_works_up_to_the_train_size(built, mirror, task_cache):
    from ftcot_hf import load_task

    ds = load_task("coin_flip", "5shot", data_dir=mirror, cache_dir=task_cache)
    assert ds["train"].num_rows == 5
    assert set(ds["train"]["sample_index"]) <= set(built("coin_flip")["train"]["sample_index"])
    assert load_task("date_understanding", "258shot", data_dir=mirror, cache_dir=task_cache)["train"].num_rows == 258
    # More than the train split was silently capped; since issue 15 it is an error naming the size (test_validation).


def test_multiarith_duplicates_are_kept_as_in_the_paper(built):
    ds = built("multiarith")
    seen: dict[tuple, list[tuple[str, int]]] = {}
    for split in ("train", "test"):
        for row in ds[split]:
            seen.setdefault((row["question"], row["answer"]), []).append((split, row["sample_index"]))
    dup = [v for v in seen.values() if len(v) > 1]
    assert len(dup) == 20
    assert sum(1 for v in dup if {s for s, _ in v} == {"train", "test"}) == 5


def test_features_are_declared_and_choices_are_structured(built):
    ds = built("date_understanding")
    features = ds["test"].features
    assert features["sample_index"].dtype == "int64"
    assert features["rationale"].dtype == "string"
    row = ds["test"][0]
    letters = [c["label"] for c in row["choices"]]
    assert letters == list("ABCDEF")
    for c in row["choices"]:
        assert f"({c['label']}) {c['text']}" in row["question"]
    assert row["answer"] in letters
    assert "choices" not in built("gsm8k")["test"].features


def test_aqua_without_train_file_builds_test_split_and_names_the_file(built, caplog, mirror, tmp_path):
    from ftcot_hf import load_task

    with caplog.at_level("WARNING"):
        ds = load_task("aqua", data_dir=mirror, cache_dir=tmp_path)
    assert list(ds) == ["test"]
    assert ds["test"].num_rows == 254
    assert ds["test"][0]["sample_index"] == 97467
    assert ds["test"][0]["rationale"]
    message = caplog.text
    assert "train.json" in message
    url = "https://raw.githubusercontent.com/deepmind/AQuA/26b64ed1f22208c6742f47df547dfd65088ec30d/train.json"
    assert url in message


def test_aqua_with_train_file_builds_the_paper_10000_question_subset(mirror, tmp_path):
    """A synthetic stand-in for train.json (the real one is not in the mirror) exercises the full path."""
    import os

    from ftcot_hf import load_task

    fake = tmp_path / "mirror"
    fake.mkdir()
    for entry in mirror.iterdir():
        if entry.name != "deepmind__AQuA":
            os.symlink(entry, fake / entry.name)
    aqua_dir = fake / "deepmind__AQuA"
    aqua_dir.mkdir()
    line = {"question": "Q{} ", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "rationale": "r", "correct": "C"}
    with open(aqua_dir / "train.json", "w") as f:
        for i in range(97467):
            f.write(json.dumps({**line, "question": f"Q{i} "}) + "\n")
    ds = load_task("aqua", data_dir=fake, cache_dir=tmp_path / "cache")
    expected = sorted(np.random.RandomState(0).permutation(97467)[:10000].tolist())
    assert ds["train"]["sample_index"] == expected
    first = ds["train"][0]
    assert first["question"] == f"Q{expected[0]} Answer choices: (A) 1, (B) 2, (C) 3, (D) 4, (E) 5."
    assert first["answer"] == "C"
    assert ds["test"].num_rows == 254
