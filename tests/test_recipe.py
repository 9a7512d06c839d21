"""The data recipe (issue 34 part 3): --keep pass_rate and its band, the student-token length filter, near-duplicate
removal, and the rows each filter removed in yield_report.json and the card."""

from __future__ import annotations

import json

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.teach import TeachConfig
from ftcot_hf.teach.augment import RationaleAugmenter, augment
from ftcot_hf.teach.recipe import RowFilter, jaccard, shingles
from ftcot_hf.teachers.base import Generation
from tests.doubles import ScriptedTeacher, exits_2_in_one_line, scripted_records


class BandTeacher(ScriptedTeacher):
    """The scripted teacher, with question q's sample j correct when j < q % 5 (pass rates 0, 1/4, ..., 1 at D=4)."""

    def reply(self, r):
        gens = super().reply(r)
        if "Therefore" in r.prompt:
            return gens
        q = int(r.prompt.split("Coin question ")[1].split()[0])
        return [Generation(g.text.replace("WRONG", "RIGHT") if r.first_index + k < q % 5
                           else g.text.replace("RIGHT", "WRONG"), g.finish_reason, g.prompt_tokens,
                           g.completion_tokens) for k, g in enumerate(gens)]  # fmt: skip


def _chunk(samples: dict[int, list[tuple[bool, str]]], finish: dict[tuple[int, int], str] | None = None) -> dict:
    """The augmenter's columns for questions -> [(correct, rationale), ...] in sample order."""
    out: dict[str, list] = {k: [] for k in ("sample_index", "completion_index", "correct", "rationale",
                                            "teacher_answer", "finish_reason", "answer_finish_reason")}  # fmt: skip
    for q, rows in samples.items():
        for j, (correct, rationale) in enumerate(rows):
            out["sample_index"].append(q)
            out["completion_index"].append(j)
            out["correct"].append(correct)
            out["rationale"].append(rationale)
            out["teacher_answer"].append(" yes.")
            out["finish_reason"].append((finish or {}).get((q, j), "stop"))
            out["answer_finish_reason"].append("stop")
    return out


def _kept(out: dict, mask: list[bool]) -> list[tuple[int, int]]:
    return [(q, j) for q, j, m in zip(out["sample_index"], out["completion_index"], mask, strict=True) if m]


T, F = True, False


def _rows(*pattern: bool) -> list[tuple[bool, str]]:
    return [(c, f"Rationale number {j} with its own words {j * 7} and more.") for j, c in enumerate(pattern)]


def test_pass_rate_band_keeps_the_correct_rows_of_the_questions_inside_it():
    # pass rates over D=4: q0 1.0, q1 0.25, q2 0.5, q3 0.0
    out = _chunk({0: _rows(T, T, T, T), 1: _rows(T, F, F, F), 2: _rows(T, T, F, F), 3: _rows(F, F, F, F)})
    row_filter = RowFilter("pass_rate", degree=4, pass_rate_min=0.25, pass_rate_max=0.75)
    assert row_filter.pass_rates(out) == {0: 1.0, 1: 0.25, 2: 0.5, 3: 0.0}
    mask, removed = row_filter(out)
    assert _kept(out, mask) == [(1, 0), (2, 0), (2, 1)]  # the band's bounds are inclusive; wrong rows never kept
    assert removed == {"incorrect": 9, "pass_rate": 4}
    # the upper bound alone drops the questions the teacher always gets right (too easy to teach anything)
    mask, _ = RowFilter("pass_rate", degree=4, pass_rate_max=0.5)(out)
    assert {q for q, _ in _kept(out, mask)} == {1, 2}


def test_pass_rate_counts_a_cut_correct_sample_and_leaves_resampled_extras_out():
    # q0: D=4 with 1 correct (0.25), then two resampled extras (j=4, 5) both correct: the rate stays 0.25
    out = _chunk({0: _rows(T, F, F, F, T, T), 1: _rows(T, T, F, F)}, finish={(1, 1): "length"})
    row_filter = RowFilter("pass_rate", degree=4, pass_rate_min=0.5)
    assert row_filter.pass_rates(out) == {0: 0.25, 1: 0.5}  # q1's cut sample is still a correct one
    mask, removed = row_filter(out)
    assert _kept(out, mask) == [(1, 0)]  # the cut row is removed by the truncation filter, before the band
    assert removed == {"incorrect": 5, "truncated": 1, "pass_rate": 3}


def test_student_length_filter_counts_in_the_given_tokenizer(tiny_gpt2):
    from transformers import AutoTokenizer

    from ftcot_hf.teach.recipe import token_counter

    count = token_counter(AutoTokenizer.from_pretrained(str(tiny_gpt2)))
    short, long = "The coin is heads up.", "The coin was flipped by Whitney and then by Erika, so " * 4
    out = _chunk({0: [(T, short), (T, long)], 1: [(F, short)]})
    limit = count([short])[0]
    assert count([long])[0] > limit
    mask, removed = RowFilter("correct", max_student_tokens=limit, count_tokens=count)(out)
    assert _kept(out, mask) == [(0, 0)] and removed == {"incorrect": 1, "student_length": 1}
    mask, removed = RowFilter("all", max_student_tokens=limit, count_tokens=count)(out)  # --keep all: only length
    assert _kept(out, mask) == [(0, 0), (1, 0)] and removed == {"student_length": 1}


def test_near_duplicates_are_removed_per_question_only():
    base = "The coin was flipped twice, so it is still heads up."
    assert jaccard(shingles(base), shingles("the coin was flipped twice so it is still HEADS up")) == 1.0
    near = "The coin was flipped twice, so it is still heads up again."
    other = "Whitney flips it and Erika does not: one flip, so the coin is tails up."
    assert 0.8 <= jaccard(shingles(base), shingles(near)) < 1.0 and jaccard(shingles(base), shingles(other)) < 0.2
    out = _chunk({0: [(T, base), (T, base.upper()), (T, near), (T, other)], 1: [(T, base)]})
    mask, removed = RowFilter("correct", dedup_jaccard=1.0)(out)
    assert _kept(out, mask) == [(0, 0), (0, 2), (0, 3), (1, 0)] and removed == {"near_duplicate": 1}
    mask, removed = RowFilter("correct", dedup_jaccard=0.8)(out)
    assert _kept(out, mask) == [(0, 0), (0, 3), (1, 0)] and removed == {"near_duplicate": 2}
    # a wrong rationale removed by --keep correct does not knock out a later correct copy of it
    out = _chunk({0: [(F, base), (T, base)]})
    assert _kept(out, RowFilter("correct", dedup_jaccard=1.0)(out)[0]) == [(0, 1)]


def test_augment_applies_the_recipe_chunk_by_chunk_and_reports_each_filter():
    everything, _ = augment(scripted_records(10), RationaleAugmenter(BandTeacher(), "coin_flip", degree=4), keep="all")
    rows = everything.to_list()
    rates = {q: sum(r["correct"] for r in rows if r["sample_index"] == q) / 4 for q in range(10)}
    assert len(set(rates.values())) > 1  # the script gives the questions different pass rates
    inside = {q for q, rate in rates.items() if 0.5 <= rate <= 0.75}
    expected = {(r["sample_index"], r["completion_index"]) for r in rows
                if r["correct"] and r["finish_reason"] != "length" and r["sample_index"] in inside}  # fmt: skip

    def run(batch_size: int):
        aug = RationaleAugmenter(BandTeacher(), "coin_flip", degree=4)
        row_filter = RowFilter("pass_rate", degree=4, pass_rate_min=0.5, pass_rate_max=0.75, dedup_jaccard=0.9)
        return augment(scripted_records(10), aug, row_filter=row_filter, batch_size=batch_size)

    (whole, one), (parts, many) = run(100), run(3)
    assert {(r["sample_index"], r["completion_index"]) for r in whole.to_list()} == expected
    assert whole["rationale"] == parts["rationale"] and one.filters == many.filters
    assert list(one.filters) == ["incorrect", "truncated", "empty", "pass_rate", "near_duplicate"]
    assert one.samples - sum(one.filters.values()) == one.kept == len(expected)
    assert one.filters["pass_rate"] > 0 and one.filters["near_duplicate"] == 0  # "Rationale j ..." all differ


def test_teach_with_the_recipe_writes_each_filters_count_to_the_report_and_the_card(tiny_gpt2, mirror, tmp_path):
    """The docs page's command, the tokenizer swapped for the test's tiny one, and the limit for the median length
    of the recorded rationales, so that the length filter removes some of them."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from tests.docs_commands import doc_command

    command = doc_command("ftcot teach --tasks coin_flip --limit 40 --max_rationale_student_tokens 96 "
                          "--student_tokenizer HuggingFaceTB/SmolLM2-135M-Instruct --dedup_jaccard 0.8 "
                          "--output_dir rationales-recipe")  # fmt: skip
    argv = command.argv[1:]
    common = ["--data_dir", str(mirror), "--cache_dir", str(tmp_path / "c.sqlite")]
    plain = tmp_path / "plain"
    assert main([*argv[:5], *common, "--output_dir", str(plain)]) == 0
    rationales = load_dataset(str(plain), "coin_flip")["train"]["rationale"]
    lengths = sorted(len(AutoTokenizer.from_pretrained(str(tiny_gpt2))(r, add_special_tokens=False).input_ids)
                     for r in rationales)  # fmt: skip
    limit = lengths[len(lengths) // 2]
    out = tmp_path / "recipe"
    swap = {"96": str(limit), "HuggingFaceTB/SmolLM2-135M-Instruct": str(tiny_gpt2), "rationales-recipe": str(out)}
    assert main([swap.get(a, a) for a in argv] + common) == 0
    report = json.loads((out / "yield_report.json").read_text())["reports"][0]
    too_long = sum(1 for n in lengths if n > limit)
    assert report["filters"]["student_length"] == too_long > 0
    assert report["filters"]["near_duplicate"] == 0  # D=1: one rationale per question, nothing to compare with
    assert report["samples"] - sum(report["filters"].values()) == report["kept"] == len(rationales) - too_long
    card = (out / "README.md").read_text()
    # the recorded teacher's preset keeps cut rationales (the paper did): no truncation filter ran
    assert list(report["filters"]) == ["incorrect", "empty", "student_length", "near_duplicate"]
    assert "| task | samples | - incorrect | - empty | - student length | - near duplicate | = kept |" in card
    assert f"at most {limit} tokens of `{tiny_gpt2}`" in card and "Jaccard >= 0.8" in card


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--keep", "pass_rate"], "needs its band"),
        (["--keep", "pass_rate", "--pass_rate_max", "0.5"], "at --degree 1: a question's pass rate is 0 or 1"),
        (["--degree", "4", "--keep", "pass_rate", "--pass_rate_min", "0.8", "--pass_rate_max", "0.2"], "is above"),
        (["--degree", "4", "--keep", "pass_rate", "--pass_rate_min", "1.5"], "between 0 and 1"),
        (["--pass_rate_min", "0.25"], "add --keep pass_rate"),
        (["--max_rationale_student_tokens", "64"], "give --student_tokenizer"),
        (["--student_tokenizer", "gpt2"], "only used by --max_rationale_student_tokens"),
        (["--dedup_jaccard", "0"], "--dedup_jaccard must be a similarity"),
        (["--keep", "best"], "--keep must be 'correct', 'all' or 'pass_rate'"),
    ],
)
def test_a_recipe_that_cannot_do_what_it_says_is_one_line_and_exit_2(flags, says, tmp_path, capsys):
    exits_2_in_one_line(["teach", "--tasks", "coin_flip", *flags, "--output_dir", str(tmp_path / "out")], capsys, says)
    assert not (tmp_path / "out").exists()


def test_an_unloadable_student_tokenizer_is_one_line_before_the_teacher(mirror, tmp_path, capsys):
    argv = ["teach", "--tasks", "coin_flip", "--limit", "3", "--max_rationale_student_tokens", "64",
            "--student_tokenizer", str(tmp_path / "no-such-model"), "--data_dir", str(mirror),
            "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--student_tokenizer" in err and "does not exist" in err and "Traceback" not in err


def test_ftcot_run_counts_in_its_own_students_tokens_and_fingerprints_the_recipe(tmp_path):
    from ftcot_hf.pipeline import RunConfig
    from ftcot_hf.pipeline.stages import teach_inputs
    from ftcot_hf.tasks import get_task

    config = RunConfig(student="gpt2", output_dir=str(tmp_path), max_rationale_student_tokens=64)
    teach = config.teach_config(tmp_path / "rationales")
    assert isinstance(teach, TeachConfig) and teach.student_tokenizer == "gpt2"
    tasks = [get_task("coin_flip")]
    plain = RunConfig(student="gpt2", output_dir=str(tmp_path)).teach_config(tmp_path / "rationales")
    assert teach_inputs(teach, tasks) != teach_inputs(plain, tasks)
    with pytest.raises(FtcotError, match="at --degree 1"):
        RunConfig(output_dir=str(tmp_path), keep="pass_rate", pass_rate_max=0.9).teach_config(tmp_path / "r")


def test_the_study_script_records_each_variants_yield_and_checks_pass_rate_equals_correct_at_d1(mirror, tmp_path):
    import argparse
    import importlib.util

    from tests.docs_commands import REPO

    spec = importlib.util.spec_from_file_location("data_recipe", REPO / "experiments" / "data_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = module.study

    args = argparse.Namespace(
        name="study", task="last_letter_concatenation", variants=["all", "correct", "pass_rate"], student="gpt2",
        epochs=1.0, learning_rate=1e-4, batch_size=8, seed=42, limit_train=30, limit_test=None,
        data_dir=str(mirror), root=str(tmp_path / "runs"), results=str(tmp_path / "results"), teach_only=True,
    )  # fmt: skip
    saved = study(args)
    cells = saved["variants"]
    assert cells["all"]["yield"]["kept"] == 30 and cells["all"]["yield"]["filters"] == {}
    correct = cells["correct"]["yield"]
    assert correct["kept"] == correct["correct"] < 30 and correct["filters"]["incorrect"] == 30 - correct["kept"]
    assert cells["pass_rate"]["same_rows_as"] == "correct" and cells["pass_rate"]["yield"]["kept"] == correct["kept"]
    table = (tmp_path / "results" / "study.md").read_text()
    assert f"| correct | 30 | incorrect {30 - correct['kept']}, empty 0 | {correct['kept']} | not run |" in table
