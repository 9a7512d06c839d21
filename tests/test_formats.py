"""Student formats: the paper's texts, Teacher-LM placements, configurable separators, format_dataset."""

from __future__ import annotations

import pytest
from datasets import Dataset

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import (
    END,
    FORMATS,
    EmptyDatasetError,
    Layout,
    MissingColumnsError,
    UnknownFormatError,
    format_dataset,
    get_format,
    make_format,
)
from ftcot_hf.tasks import score_completion

RECORD = {
    "question": " A coin is heads up. Whitney flips the coin. Is the coin still heads up? ",
    "answer": "no",
    "rationale": "\nThe coin was flipped once, so it is tails up. ",
    "fundamentals": "Each flip reverses the coin.",
    "common_errors": "Counting the people instead of the flips.",
}
Q = "A coin is heads up. Whitney flips the coin. Is the coin still heads up?"
R = "The coin was flipped once, so it is tails up."
F = "Fundamentals: Each flip reverses the coin."
E = "Common errors: Counting the people instead of the flips."


def test_paper_formats_match_spec_text():
    assert FORMATS["ft_cot"](RECORD) == {"prompt": f"{Q} ###", "completion": f" {R} --> no END"}
    assert FORMATS["vanilla"](RECORD) == {"prompt": f"{Q} ###", "completion": " no END"}
    assert FORMATS["ft_cot_t5"](RECORD) == {"prompt": Q, "completion": f"{R} --> no"}
    assert FORMATS["vanilla_t5"](RECORD) == {"prompt": Q, "completion": "no"}
    assert FORMATS["natural"].completion(RECORD) == f" {R}\n\nTherefore, the answer is no END"
    assert FORMATS["ft_cot"].prefix == "-->" and FORMATS["vanilla"].prefix is None
    assert FORMATS["ft_cot"].stop == END and FORMATS["ft_cot_t5"].stop is None
    assert FORMATS["zero_shot"].prompt(RECORD) == f"Q: {Q}\n\nA:" and not FORMATS["zero_shot"].trainable


def test_teacher_lm_placements_text():
    assert FORMATS["middle_rationale"](RECORD) == FORMATS["ft_cot"](RECORD)
    assert FORMATS["middle_fundamentals"].completion(RECORD) == f" {F} --> no END"
    assert FORMATS["middle_common_errors"].completion(RECORD) == f" {E} --> no END"
    assert FORMATS["middle_triple"].completion(RECORD) == f" {F} {R} {E} --> no END"
    assert FORMATS["tail_rationale"].completion(RECORD) == f" --> no END {R}"
    assert FORMATS["tail_triple"].completion(RECORD) == f" --> no END {F} {R} {E}"
    assert FORMATS["tail_triple_t5"].completion(RECORD) == f"--> no END {F} {R} {E}"
    assert FORMATS["middle_triple_t5"].completion(RECORD) == f"{F} {R} {E} --> no"
    assert FORMATS["tail_triple"].required_columns == (
        "question",
        "answer",
        "fundamentals",
        "rationale",
        "common_errors",
    )
    # An empty annotation is left out with its label.
    assert FORMATS["middle_triple"].completion({**RECORD, "fundamentals": ""}) == f" {R} {E} --> no END"


@pytest.mark.parametrize(
    ("task", "answer", "rationale"),
    [
        ("coin_flip", "no", "Flipped once: no longer heads, yes really."),
        ("multiarith", "39", "32 + 42 = 74 and 74 - 35 = 39, not 12."),
        ("last_letter_concatenation", "ya", "The last letters are y and a."),
        ("aqua", "C", "Answer choices A and B are too small, so C."),
    ],
)
@pytest.mark.parametrize("name", ["ft_cot", "middle_triple", "tail_rationale", "tail_triple", "tail_common_errors"])
def test_paper_mode_parsing_finds_the_answer_in_every_layout(name, task, answer, rationale):
    fmt = get_format(name)
    record = {**RECORD, "answer": answer, "rationale": rationale, "common_errors": "Say 7 or B or yes wrongly."}
    completion = fmt.completion(record)
    generated = completion.split(fmt.stop)[0]  # inference stops at the stop phrase, which it does not return
    scored = score_completion(task, generated, answer, prefix=fmt.prefix, mode="paper")
    assert scored["correct"], (generated, scored)


def test_trainable_decoder_prompts_end_on_a_token_boundary(tmp_path):
    # TRL finds the completion by the common token prefix of prompt and prompt + completion.
    from tests.tiny_models import make_tokenizer

    tok = make_tokenizer(tmp_path)
    for name, fmt in FORMATS.items():
        if not fmt.trainable or fmt.encoder_decoder:
            continue
        prompt, completion = fmt.prompt(RECORD), fmt.completion(RECORD)
        ids_prompt = tok(prompt)["input_ids"]
        ids_full = tok(prompt + completion)["input_ids"]
        assert ids_full[: len(ids_prompt)] == ids_prompt, name


def test_make_format_changes_separators_and_prefix():
    fmt = make_format("ft_cot", prompt_sep="\n\n###\n\n", answer_sep="\n\n-->\n\n")
    assert fmt.prompt(RECORD) == f"{Q}\n\n###\n\n"
    assert fmt.completion(RECORD) == f" {R}\n\n-->\n\n no END"
    assert fmt.prefix == "-->" and "ft_cot" in fmt.name and fmt.name not in FORMATS
    custom = make_format("tail_triple", answer_sep=" Answer:", stop="<stop>", name="tail_custom", register=True)
    try:
        assert get_format("tail_custom") is custom
        assert custom.prefix == "Answer:" and custom.stop == "<stop>"
        assert custom.completion(RECORD) == f" Answer: no <stop> {F} {R} {E}"
    finally:
        FORMATS.pop("tail_custom")
    assert make_format("vanilla", stop=None).completion(RECORD) == " no"
    with pytest.raises(FtcotError, match="fixed text"):
        make_format("natural", stop=None)
    with pytest.raises(ValueError, match="stop phrase"):
        make_format("tail_rationale", stop=None)
    with pytest.raises(ValueError, match="Unknown layout field"):
        Layout(fields=("hints",))


def test_unknown_format_suggests_a_close_name():
    with pytest.raises(UnknownFormatError, match="Did you mean 'ft_cot'"):
        get_format("ft-cot")


def _rationales(n: int = 3) -> Dataset:
    return Dataset.from_dict({
        "sample_index": list(range(n)),
        "completion_index": [0] * n,
        "task": ["coin_flip"] * n,
        "question": [f"Question {i}?" for i in range(n)],
        "answer": ["yes"] * n,
        "rationale": [f"Because {i}." for i in range(n)],
        "teacher": ["t"] * n,
    })  # fmt: skip


def test_format_dataset_gives_trl_columns_and_keeps_the_gold_answer():
    out = format_dataset(_rationales(), "ft_cot", eos_token="<|endoftext|>")
    assert set(out.column_names) == {"prompt", "completion", "answer", "sample_index", "completion_index", "task"}
    assert out[1]["prompt"] == "Question 1? ###"
    assert out[1]["completion"] == " Because 1. --> yes END<|endoftext|>"
    assert out["answer"] == ["yes"] * 3 and out["task"] == ["coin_flip"] * 3
    baseline = format_dataset(_rationales(), "zero_shot")
    assert "completion" not in baseline.column_names and baseline[0]["prompt"] == "Q: Question 0?\n\nA:"


def test_format_dataset_errors_name_the_columns_and_the_format():
    with pytest.raises(MissingColumnsError, match=r"'tail_triple' needs the column\(s\) fundamentals, common_errors"):
        format_dataset(_rationales(), "tail_triple")
    holes = _rationales().map(lambda r, i: {"rationale": None if i == 2 else r["rationale"]}, with_indices=True)
    with pytest.raises(MissingColumnsError, match=r"'rationale' in every row.*1 of 3 rows.*sample_index 2"):
        format_dataset(holes, "ft_cot")
    with pytest.raises(EmptyDatasetError, match="empty dataset with format 'vanilla'"):
        format_dataset(_rationales().select([]), "vanilla")


def test_step_by_step_trains_on_a_label_row_and_a_rationale_row_and_asks_for_the_label():
    from datasets import Dataset

    from ftcot_hf.students.formats import format_dataset

    data = Dataset.from_dict({"question": [" Is 4 even? "], "answer": ["yes"], "rationale": [" 4 = 2 x 2. "],
                              "sample_index": [7]})  # fmt: skip
    rows = format_dataset(data, "step_by_step")
    assert rows["prompt"] == ["[label] Is 4 even? ###", "[rationale] Is 4 even? ###"]
    assert rows["completion"] == [" yes END", " 4 = 2 x 2. END"] and rows["sample_index"] == [7, 7]
    fmt = get_format("step_by_step")
    assert fmt.prompt(data[0]) == "[label] Is 4 even? ###" and fmt.prefix is None and fmt.stop == "END"


def test_ftcot_run_with_the_step_by_step_format(tiny_gpt2, tmp_path, mirror):
    import json

    from ftcot_hf.cli import main

    out = tmp_path / "run"
    assert main(["run", "--format", "step_by_step", "--student", str(tiny_gpt2), "--limit_train", "6",
                 "--limit_test", "3", "--num_train_epochs", "1", "--eval_max_new_tokens", "4",
                 "--eval_untrained", "false", "--max_length", "128", "--cpu_threads", "1", "--data_dir", str(mirror),
                 "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "student" / "coin_flip" / "train_summary.json").read_text())
    kept = json.loads((out / "rationales" / "yield_report.json").read_text())["reports"][0]["kept"]
    assert summary["global_step"] == -(-2 * kept // 8) > -(-kept // 8)  # 2 rows per rationale, batch 8
    prompts = [json.loads(line)["prompt"] for line in (out / "eval" / "coin_flip" / "completions.jsonl").open()]
    assert len(prompts) == 3 and all(p.startswith("[label] ") for p in prompts)
