"""The replay teacher: Kojima et al.'s raw logs parsed, matched to our records and served by our prompts; our JSONL
format; the reference implementation's completion data; and errors that say which question is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from ftcot_hf import ChecksumMismatchError, SourceFormatError
from ftcot_hf.tasks import get_task
from ftcot_hf.tasks.prompts import GENERIC_ANSWER_TRIGGER, stage1_prompt, stage2_prompt
from ftcot_hf.teachers.base import TEACHERS, Generation, MissingRecordingError, Request, SamplingParams, TeacherError
from ftcot_hf.teachers.cache import CachedTeacher, request_key
from ftcot_hf.teachers.replay import (
    KOJIMA_LOG_NAMES,
    KOJIMA_MODEL,
    ReplayTeacher,
    guess_finish_reason,
    kojima_log_source,
    kojima_teacher_accuracy,
    match_kojima_log,
    parse_kojima_log,
    read_kojima_log,
)

DERIVED = "kojima-takeshi188__zero_shot_cot/derived"

# Blocks whose answer completion repeats the trigger; the derived files split them at the last trigger, which
# contradicts the block's own pred_before line. Our parser follows pred_before.
DERIVED_SPLIT_WRONG = {("gsm8k", 583), ("gsm8k", 621)}


def _derived(mirror: Path, task: str) -> list[dict]:
    path = mirror / DERIVED / f"{KOJIMA_LOG_NAMES[task]}_zero_shot_cot.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def kojima(mirror, built):
    """task -> (parsed log, our dataset, matched records, unmatched entries), parsed once for the module."""
    out = {}
    for task in KOJIMA_LOG_NAMES:
        log = read_kojima_log(task, data_dir=mirror)
        dataset = built(task)
        records, unmatched = match_kojima_log(log, dataset)
        out[task] = (log, dataset, records, unmatched)
    return out


@pytest.fixture(scope="module")
def replay(kojima):
    from ftcot_hf.teachers.replay import ReplayTeacher

    return ReplayTeacher.from_kojima_records(r for _, _, records, _ in kojima.values() for r in records)


def test_registered_as_the_replay_backend():
    assert TEACHERS["replay"] is ReplayTeacher
    assert ReplayTeacher.backend == "replay"


def test_log_sources_are_pinned_to_the_manifest(mirror):
    manifest = {e["path"]: e for e in json.loads((mirror / "manifest.json").read_text())}
    for task in KOJIMA_LOG_NAMES:
        source = kojima_log_source(task)
        entry = manifest[source.path]
        assert (source.repo, source.commit, source.sha256) == (entry["repo"], entry["commit"], entry["sha256"])
        assert source.license == "unknown (OpenAI model output)"
        assert source.url.endswith(f"/kojima-takeshi188/zero_shot_cot/{source.commit}/{source.path}")


def test_parser_agrees_with_the_derived_files_and_the_logs_accuracy_lines(mirror, kojima):
    deviations = []
    for task, (log, _, _, _) in kojima.items():
        derived = _derived(mirror, task)
        assert len(log.entries) == len(derived), task
        assert log.recomputed_accuracy() == pytest.approx(log.accuracy, abs=1e-9), task
        for entry, d in zip(log.entries, derived, strict=True):
            assert entry.log_index == d["log_index"]
            assert entry.question == d["question"], (task, entry.log_index)
            if (entry.rationale, entry.answer_completion) != (d["rationale"], d["answer_completion"]):
                deviations.append((task, entry.log_index))
                # Ours is the split that reproduces the block's pred_before line.
                squash = "".join(d["pred_before"].replace(":", "").replace(",", "").split())
                assert "".join(entry.answer_completion.replace(":", "").replace(",", "").split()) == squash
                assert entry.rationale + " " + get_task(task).kojima_trigger + entry.answer_completion == (
                    d["rationale"] + " " + get_task(task).kojima_trigger + d["answer_completion"]
                )
    assert set(deviations) == DERIVED_SPLIT_WRONG


def test_every_log_question_maps_to_the_derived_sample_index_and_split(mirror, kojima):
    for task, (log, _, records, unmatched) in kojima.items():
        assert unmatched == [], task
        assert len({r.sample_index for r in records}) == len(records) == len(log.entries), task
        derived = {d["log_index"]: d for d in _derived(mirror, task)}
        for rec in records:
            d = derived[rec.log_index]
            assert (rec.sample_index, rec.split) == (d["rt_sample_index"], d["rt_split"]), (task, rec.log_index)


def test_date_understanding_letters_are_translated_to_our_option_order(mirror, kojima):
    _, _, records, _ = kojima["date_understanding"]
    derived = {d["log_index"]: d for d in _derived(mirror, "date_understanding")}
    assert all(r.letter_map for r in records)  # Kojima's own shuffle: every question's order differs from ours
    for rec in records:
        assert rec.letter_map[rec.raw.gt] == rec.answer == derived[rec.log_index]["rt_gold_letter"]
    # A rationale citing "(B)" in Kojima's order cites the same option text in ours.
    rec = next(r for r in records if r.log_index == 139)
    assert "answer is (B)" in rec.raw.rationale and rec.letter_map["B"] == "D"
    assert "answer is (D)" in rec.rationale and "(D) 04/30/2021" in rec.question
    for other in ("aqua", "commonsense_qa", "tracking_shuffled_objects"):
        assert not any(r.letter_map for r in kojima[other][2]), other


def test_teacher_accuracy_per_task(mirror, kojima, capsys):
    """The recorded answers scored against OUR gold answers (paper mode): the replayed teacher's yield."""
    rows = {}
    for task, (_, dataset, _, _) in kojima.items():
        rows[task] = kojima_teacher_accuracy(task, data_dir=mirror, dataset=dataset)
    # printed into pytest's capture: `pytest -s` (or a failure) shows the table, `pytest -q` stays quiet
    print("\nKojima text-davinci-002 Zero-shot-CoT, scored against our gold answers (paper mode):")
    print(f"{'task':27s} {'n':>5s} {'all %':>6s} {'train %':>8s} {'test %':>7s} {'log %':>6s} {'length':>6s}")
    for task, r in rows.items():
        pct = {k: "-" if r[k] is None else f"{100 * r[k]:.2f}" for k in ("all", "train", "test", "log_accuracy")}
        print(
            f"{task:27s} {r['n_all']:5d} {pct['all']:>6s} {pct['train']:>8s} {pct['test']:>7s} "
            f"{pct['log_accuracy']:>6s} {r['length']:6d}"
        )
    for task, r in rows.items():
        log = kojima[task][0]
        assert r["n_all"] == len(log.entries) and r["unmatched"] == 0, task
        # Our scoring is the reference's (numbers compared as floats, gold commas dropped), Kojima's compares
        # strings: ours may only be a little more lenient.
        assert -1e-9 <= r["all"] - r["log_accuracy"] <= 0.02, task
    assert rows["multiarith"]["all"] == pytest.approx(0.7867, abs=5e-4)
    assert rows["date_understanding"]["all"] == pytest.approx(rows["date_understanding"]["log_accuracy"])
    assert rows["gsm8k"]["n_train"] == 0 and rows["gsm8k"]["n_test"] == 1319
    assert rows["coin_flip"]["n_train"] == 350 and rows["coin_flip"]["n_test"] == 150


def test_replays_stage1_then_stage2_by_our_prompts(kojima, replay):
    for task in ("multiarith", "date_understanding", "tracking_shuffled_objects", "aqua"):
        records = kojima[task][2]
        rec = records[len(records) // 2]
        requests = [Request(stage1_prompt(rec.question))]
        [(pos, [rationale])] = list(replay.generate(requests))
        assert pos == 0 and rationale.text == rec.rationale and rationale.finish_reason in ("stop", "length")
        answer_prompt = stage2_prompt(rec.question, rationale.text, get_task(task).kojima_trigger)
        [(_, [answer])] = list(replay.generate([Request(answer_prompt)]))
        assert answer.text == rec.answer_completion
        assert replay.info(answer_prompt).task == task and replay.info(answer_prompt).stage == 2
    # Several requests at once: one result per position.
    recs = kojima["coin_flip"][2][:5]
    out = dict(replay.generate([Request(stage1_prompt(r.question)) for r in recs]))
    assert [out[i][0].text for i in range(5)] == [r.rationale for r in recs]
    assert replay.model == KOJIMA_MODEL


def test_duplicated_questions_are_served_one_recording(kojima, replay):
    records = kojima["multiarith"][2]
    by_question: dict[str, list] = {}
    for rec in records:
        by_question.setdefault(rec.question, []).append(rec)
    duplicated = [recs for recs in by_question.values() if len(recs) > 1]
    assert len(duplicated) == 20
    first = duplicated[0]
    info = replay.info(stage1_prompt(first[0].question))
    assert set(info.sample_indices) == {r.sample_index for r in first}


def test_missing_recording_names_task_sample_index_and_prompt(kojima, replay):
    with pytest.raises(MissingRecordingError) as e:
        list(replay.generate([Request("Q: What is the colour of a unicorn?\nA: Let's think step by step.")]))
    assert isinstance(e.value, TeacherError) and isinstance(e.value, KeyError)
    assert "What is the colour of a unicorn" in str(e.value)

    rec = kojima["gsm8k"][2][7]
    edited = stage2_prompt(rec.question, rec.rationale.strip() + " Hmm.", get_task("gsm8k").kojima_trigger)
    with pytest.raises(MissingRecordingError) as e:
        list(replay.generate([Request(edited)]))
    message = str(e.value)
    assert "task=gsm8k" in message and f"sample_index={rec.sample_index}" in message
    assert rec.question[:40] in message and "stage-2" in message

    # A greedy log has one sample per prompt: asking for samples 0..3 fails on sample 1, naming the question.
    with pytest.raises(MissingRecordingError) as e:
        list(replay.generate([Request(stage1_prompt(rec.question), SamplingParams(temperature=0.7), n=4)]))
    message = str(e.value)
    assert "sample_index 1" in message and "recorded [0]" in message
    assert f"task=gsm8k, sample_index={rec.sample_index}" in message


def test_identity_tells_recordings_apart(tmp_path):
    one = ReplayTeacher({"p": [Generation("a", "stop")]}, model="m")
    same = ReplayTeacher({"p": [Generation("a", "stop")]}, model="m")
    other = ReplayTeacher({"p": [Generation("b", "stop")]}, model="m")
    assert one.identity() == same.identity() != other.identity()
    assert one.identity()["backend"] == "replay" and one.identity()["model"] == "m"
    request = Request("p")
    assert request_key(one.identity(), request, 0) != request_key(other.identity(), request, 0)
    both = ReplayTeacher.merge(one, ReplayTeacher({"q": [Generation("c", "length")]}, model="m"))
    assert dict(both.generate([Request("p"), Request("q")])) == {
        0: [Generation("a", "stop")],
        1: [Generation("c", "length")],
    }
    assert both.model == "m" and both.identity() not in (one.identity(), other.identity())


def test_from_source_dispatches_on_the_source_kind(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"prompt": "P", "completion": "x", "finish_reason": "stop"}) + "\n")
    assert ReplayTeacher.from_source(path).samples("P") == {0: Generation("x", "stop")}
    with pytest.raises(ValueError, match="exactly one task"):
        ReplayTeacher.from_source(tmp_path / "d.json", tasks=["coin_flip", "gsm8k"])
    with pytest.raises(ValueError, match="Unknown replay source"):
        ReplayTeacher.from_source(tmp_path / "r.txt")


def test_kojima_identity_and_cache_rerun_makes_no_backend_call(kojima, tmp_path):
    records = kojima["coin_flip"][2][:10]
    teacher = ReplayTeacher.from_kojima_records(records)
    assert teacher.identity()["model"] == KOJIMA_MODEL and len(teacher.identity()["recording"]) == 16
    requests = [Request(stage1_prompt(r.question)) for r in records]
    cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
    first = dict(cached.generate(requests))
    assert cached.calls == 10
    again = CachedTeacher(ReplayTeacher.from_kojima_records(records), tmp_path / "c.sqlite")
    assert dict(again.generate(requests)) == first and again.calls == 0


def test_jsonl_format_samples_and_round_trip(tmp_path):
    path = tmp_path / "rec.jsonl"
    rows = [
        {"prompt": "P1", "completion": " a", "finish_reason": "stop"},
        {"prompt": "P2", "completion": " b0", "finish_reason": "stop", "sample_index": 0, "prompt_tokens": 3},
        {"prompt": "P2", "completion": " b1", "finish_reason": "length", "sample_index": 1, "completion_tokens": 9},
        {"prompt": "P2", "completion": " b2", "finish_reason": "stop", "sample_index": 2, "task": "coin_flip"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    teacher = ReplayTeacher.from_jsonl(path)
    out = dict(teacher.generate([Request("P1"), Request("P2", n=2, first_index=1)]))
    assert [g.text for g in out[0]] == [" a"]
    assert out[1] == [Generation(" b1", "length", None, 9), Generation(" b2", "stop")]
    assert teacher.samples("P2")[0] == Generation(" b0", "stop", 3, None)
    with pytest.raises(MissingRecordingError, match="sample_index 3"):
        list(teacher.generate([Request("P2", n=4)]))
    copy = ReplayTeacher.from_jsonl(teacher.to_jsonl(tmp_path / "copy.jsonl"))
    assert copy.fingerprint() == teacher.fingerprint()


@pytest.mark.parametrize(
    "line, needle",
    [
        ('{"prompt": "P", "completion": "x", "finish_reason": "stop"', "malformed JSON line"),
        ('{"prompt": "P", "finish_reason": "stop"}', "missing field 'completion'"),
        ('{"prompt": "P", "completion": "x", "finish_reason": "eos"}', "use 'stop' or 'length'"),
        ('{"prompt": "P", "completion": "x", "finish_reason": "stop", "sample_index": "1"}', "must be int"),
        ('{"prompt": "P", "completion": "y", "finish_reason": "stop"}', "different recording"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_jsonl_bad_lines_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "P", "completion": "x", "finish_reason": "stop"})
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(SourceFormatError, match=needle) as e:
        ReplayTeacher.from_jsonl(path)
    assert f"{path}:3" in str(e.value)


def _completion_data(dataset, indices, *, question_of=None) -> dict:
    rows = {int(r["sample_index"]): r for split in dataset.values() for r in split}
    data = {}
    for i in indices:
        q = question_of(i) if question_of else rows[i]["question"]
        data[str(i)] = [
            {
                "sample_index": i,
                "completion_index": j,
                "question": q,
                "answer": rows[i]["answer"],
                "reasoning_prompt": f"Q: {q}\nA: Let's think step by step.",
                "reasoning_completion": f" Rationale {j} of {i}.",
                "reasoning_finish_reason": "length" if j else "stop",
                "prompt": f"Q: {q}\nA: Let's think step by step. Rationale {j} of {i}.\nTherefore, the answer is",
                "completion": f" {rows[i]['answer']}.",
                "finish_reason": "stop",
            }
            for j in range(2)
        ]
    metadata = {"base_model": "text-davinci-002", "dataset_key": "coin_flip", "prediction_template": "zs_cot"}
    return {"metadata": metadata, "data": data}


def test_reference_completion_data_is_keyed_by_our_prompts(built, tmp_path):
    dataset = built("coin_flip")
    path = tmp_path / "D_coin_flip.json"
    path.write_text(json.dumps(_completion_data(dataset, [3, 42])), encoding="utf-8")
    teacher = ReplayTeacher.from_completion_data(path, "coin_flip", dataset=dataset)
    assert "text-davinci-002" in teacher.model
    rows = {int(r["sample_index"]): r for split in dataset.values() for r in split}
    q = rows[42]["question"]
    [(_, gens)] = list(teacher.generate([Request(stage1_prompt(q), SamplingParams(temperature=0.7), n=2)]))
    assert [(g.text, g.finish_reason) for g in gens] == [
        (" Rationale 0 of 42.", "stop"),
        (" Rationale 1 of 42.", "length"),
    ]
    [(_, [answer])] = list(teacher.generate([Request(stage2_prompt(q, gens[1].text, GENERIC_ANSWER_TRIGGER))]))
    assert answer.text == f" {rows[42]['answer']}."
    assert teacher.info(stage1_prompt(q)).sample_indices == (42,)


def test_reference_completion_data_errors_name_the_sample(built, tmp_path):
    dataset = built("coin_flip")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_completion_data(dataset, [5], question_of=lambda i: "Another question?")))
    with pytest.raises(SourceFormatError, match=r"data\['5'\]\[0\].*is not our sample 5"):
        ReplayTeacher.from_completion_data(path, "coin_flip", dataset=dataset)
    bad = _completion_data(dataset, [5])
    bad["data"]["100000"] = bad["data"].pop("5")
    path.write_text(json.dumps(bad))
    with pytest.raises(SourceFormatError, match="no record with sample_index 100000"):
        ReplayTeacher.from_completion_data(path, "coin_flip", dataset=dataset)
    bad = _completion_data(dataset, [5])
    del bad["data"]["5"][1]["reasoning_completion"]
    path.write_text(json.dumps(bad))
    with pytest.raises(SourceFormatError, match=r"\[1\]: missing field 'reasoning_completion'"):
        ReplayTeacher.from_completion_data(path, "coin_flip", dataset=dataset)
    path.write_text(json.dumps({"metadata": {"dataset_key": "gsm8k"}, "data": {}}))
    with pytest.raises(SourceFormatError, match="dataset_key is 'gsm8k'"):
        ReplayTeacher.from_completion_data(path, "coin_flip", dataset=dataset)


def test_edited_log_in_the_mirror_is_rejected(mirror, tmp_path):
    source = kojima_log_source("coin_flip")
    target = tmp_path / source.mirror_path
    target.parent.mkdir(parents=True)
    shutil.copyfile(mirror / source.mirror_path, target)
    target.write_text(target.read_text(encoding="utf-8").replace("GT : yes", "GT : no", 1), encoding="utf-8")
    with pytest.raises(ChecksumMismatchError, match=source.sha256):
        read_kojima_log("coin_flip", data_dir=tmp_path)


def test_log_of_another_task_or_broken_block_is_a_format_error(mirror, tmp_path):
    log = mirror / kojima_log_source("coin_flip").mirror_path
    with pytest.raises(SourceFormatError, match="answer trigger"):
        parse_kojima_log(log, "gsm8k")
    broken = tmp_path / "broken.log"
    text = log.read_text(encoding="utf-8")
    first = text.index("1st data")  # the Namespace line above holds the trigger too
    broken.write_text(
        text[:first] + text[first:].replace("Therefore, the answer (Yes or No) is", "So", 1), encoding="utf-8"
    )
    with pytest.raises(SourceFormatError, match=r"broken\.log: block 1st data \(line \d+\)"):
        parse_kojima_log(broken, "coin_flip")


def test_finish_reason_heuristic(kojima):
    records = {r.log_index: r for r in kojima["multiarith"][2]}
    assert records[3].raw.rationale.endswith("Now we just have to add 3.5 and 0")  # ran into 128 tokens
    assert records[3].rationale_finish_reason == "length"
    assert records[2].rationale_finish_reason == "stop"
    assert guess_finish_reason(" \n\n2,041 + 63,093 = 65,134", 128) == "stop"  # short: a natural end
    assert guess_finish_reason(" word" * 120, 128) == "length"
    assert guess_finish_reason(" word" * 120 + ".", 128) == "stop"


# -- from_config: what `ftcot teach --teacher replay` (and the text-davinci-002 preset) calls -------------------------

COMMON = {"model": None, "base_url": None, "data_dir": None}


def test_from_config_reads_a_jsonl_replay_file(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"prompt": "P", "completion": "x", "finish_reason": "stop"}) + "\n")
    teacher = ReplayTeacher.from_config(**COMMON, tasks=[SimpleNamespace(name="coin_flip")], replay_file=str(path))
    assert teacher.samples("P") == {0: Generation("x", "stop")} and teacher.model == "recording r.jsonl"
    # The replay file wins over the preset's source; the task list does not matter for a JSONL recording.
    same = ReplayTeacher.from_config(**COMMON, tasks=["coin_flip", "gsm8k"], replay_file=path, source="kojima")
    assert same.identity() == teacher.identity()


def test_from_config_missing_replay_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "rec.jsonl"
    with pytest.raises(ValueError) as e:
        ReplayTeacher.from_config(**COMMON, tasks=["coin_flip"], replay_file=str(missing))
    assert str(missing) in str(e.value) and "\n" not in str(e.value)


def test_from_config_completion_data_needs_exactly_one_task(tmp_path, monkeypatch):
    path = tmp_path / "D_coin_flip.json"
    path.write_text(json.dumps({"metadata": {}, "data": {}}))
    for tasks in ([], ["coin_flip", "gsm8k"]):
        with pytest.raises(ValueError, match="exactly one task"):
            ReplayTeacher.from_config(**COMMON, tasks=tasks, replay_file=str(path))
    calls = []
    monkeypatch.setattr(
        ReplayTeacher, "from_completion_data", classmethod(lambda cls, *a, **kw: calls.append((a, kw)) or cls())
    )
    ReplayTeacher.from_config(model=None, base_url=None, tasks=[SimpleNamespace(name="coin_flip")],
                              data_dir="/mirror", replay_file=str(path))  # fmt: skip
    assert calls == [((path, "coin_flip"), {"data_dir": "/mirror"})]


def test_from_config_without_a_file_replays_the_kojima_logs_of_the_tasks(mirror, built, monkeypatch):
    import ftcot_hf.tasks.builder

    monkeypatch.setattr(ftcot_hf.tasks.builder, "load_task", lambda name, **kw: built(name))
    tasks = [SimpleNamespace(name="coin_flip"), "multiarith"]  # Task objects (their .name) or names
    teacher = ReplayTeacher.from_config(model=None, base_url=None, tasks=tasks, data_dir=mirror)
    assert teacher.model == KOJIMA_MODEL and len(teacher.sources) == 2
    assert {teacher.info(p).task for p in teacher.prompts()} == {"coin_flip", "multiarith"}
    with pytest.raises(ValueError, match="Unknown replay source 'elsewhere'"):
        ReplayTeacher.from_config(**COMMON, tasks=tasks, source="elsewhere")
    with pytest.raises(TypeError):
        ReplayTeacher.from_config(**COMMON, tasks=tasks, max_concurrency=4)
