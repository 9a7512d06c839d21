"""Teaching: the request cache, the augmenter (two-stage CoT, D samples, filter, yield), the transformers backend."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from datasets import Dataset

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import get_task
from ftcot_hf.tasks.prompts import stage1_prompt
from ftcot_hf.teach.augment import RationaleAugmenter, augment
from ftcot_hf.teachers.base import Generation, Request, SamplingParams
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache, default_cache_path, request_key
from tests.doubles import ScriptedTeacher, scripted_records


def test_cache_location_follows_hf_home(monkeypatch, tmp_path):
    monkeypatch.delenv("FTCOT_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_cache_path() == tmp_path / "hf" / "ftcot" / "teacher_cache.sqlite"
    monkeypatch.setenv("FTCOT_CACHE", str(tmp_path / "mine.sqlite"))
    assert default_cache_path() == tmp_path / "mine.sqlite"


def test_cache_key_covers_every_sampling_parameter():
    ident = {"backend": "b", "model": "m"}
    base = Request("p", SamplingParams())
    keys = {
        request_key(ident, base, 0),
        request_key(ident, base, 1),
        request_key(ident, Request("p", SamplingParams(temperature=0.7)), 0),
        request_key(ident, Request("p", SamplingParams(max_tokens=64)), 0),
        request_key(ident, Request("p", SamplingParams(top_p=0.9)), 0),
        request_key(ident, Request("p", SamplingParams(stop=("END",))), 0),
        request_key(ident, Request("p", SamplingParams(seed=1)), 0),
        request_key(ident, Request("p", chat=True), 0),
        request_key({"backend": "b", "model": "m2"}, base, 0),
        request_key(ident, Request("q", SamplingParams()), 0),
    }
    assert len(keys) == 10


def test_rerun_makes_zero_calls_and_extra_samples_ask_only_for_the_tail(tmp_path):
    scripted = ScriptedTeacher()
    teacher = CachedTeacher(scripted, tmp_path / "c.sqlite")
    requests = [Request(f"Q{i} [gold:yes]", SamplingParams(temperature=0.7), n=3) for i in range(4)]
    first = dict(teacher.generate(requests))
    assert teacher.calls == 4 and len(teacher.cache) == 12
    again = CachedTeacher(scripted, tmp_path / "c.sqlite")
    assert dict(again.generate(requests)) == first
    assert again.calls == 0
    more = [Request(r.prompt, r.params, n=5) for r in requests]
    out = dict(again.generate(more))
    assert again.calls == 4
    assert [(r.first_index, r.n) for r in scripted.requests[-4:]] == [(3, 2)] * 4
    assert all(out[i][:3] == first[i] for i in range(4))


def _writer(path: str, worker: int) -> None:
    cache = RequestCache(path)
    for k in range(200):
        cache.store(f"{worker}-{k}".encode(), 0, [Generation(f"text {worker} {k}", "stop", 1, 2)])
        cache.store(b"shared", worker * 200 + k, [Generation(f"shared {worker} {k}", "stop")])  # one row, 4 writers


def test_concurrent_writer_processes_do_not_corrupt_the_cache(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    RequestCache(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(RequestCache(path)) == 800 + 800
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = RequestCache(path).lookup([b"3-199", b"shared"])
    assert got[b"3-199"][0].text == "text 3 199"
    assert [g.text for g in got[b"shared"]] == [f"shared {w} {k}" for w in range(4) for k in range(200)]  # none lost


def test_augmenter_two_stages_filter_and_yield(tmp_path):
    scripted = ScriptedTeacher()
    teacher = CachedTeacher(scripted, tmp_path / "c.sqlite")
    # keep_truncated: the script marks sample j=0 "length"; dropping cut samples is tested in test_faults_teach.py
    aug = RationaleAugmenter(teacher, "coin_flip", degree=4, keep_truncated=True)
    assert aug.temperature == 0.7
    kept, report = augment(scripted_records(), aug)
    everything, _ = augment(scripted_records(), RationaleAugmenter(teacher, "coin_flip", degree=4), keep="all")
    assert everything.num_rows == 24
    assert set(everything.column_names) >= {
        "sample_index", "completion_index", "rationale", "teacher_answer", "teacher_prediction", "correct",
        "finish_reason", "temperature", "teacher", "question", "answer",
    }  # fmt: skip
    assert sorted(set(everything["completion_index"])) == [0, 1, 2, 3]
    expected_correct = [" RIGHT " in r for r in everything["rationale"]]
    assert everything["correct"] == expected_correct
    assert kept.num_rows == sum(expected_correct) == report.correct == report.kept
    assert all(kept["correct"])
    assert report.questions == 6 and report.samples == 24
    assert report.finish_length == 6  # sample j=0 of each question is marked "length" by the script
    stage1 = [r for r in scripted.requests if "Therefore" not in r.prompt]
    assert stage1[0].prompt == stage1_prompt("Coin question 0 [gold:yes]")
    assert stage1[0].params.temperature == 0.7 and stage1[0].n == 4
    stage2 = [r for r in scripted.requests if "Therefore" in r.prompt]
    assert stage2[0].prompt.endswith("\nTherefore, the answer is") and stage2[0].params.temperature == 0
    calls = teacher.calls
    augment(scripted_records(), RationaleAugmenter(teacher, "coin_flip", degree=4))
    assert teacher.calls == calls  # fully cached


def test_kojima_trigger_and_greedy_default():
    scripted = ScriptedTeacher()
    aug = RationaleAugmenter(scripted, "coin_flip", trigger="kojima")
    assert aug.temperature == 0.0
    augment(scripted_records(2), aug, keep="all")
    stage2 = [r.prompt for r in scripted.requests if "Therefore" in r.prompt]
    assert all(p.endswith(get_task("coin_flip").kojima_trigger) for p in stage2)


def test_resample_until_k_correct_respects_the_budget():
    scripted = ScriptedTeacher()
    aug = RationaleAugmenter(scripted, "coin_flip", degree=1, temperature=0.7, resample_until=2, max_extra_samples=7)
    everything, report = augment(scripted_records(), aug, keep="all")
    assert report.extra_samples == 7
    assert everything.num_rows == 6 + 7
    per_q = {i: everything["sample_index"].count(i) for i in range(6)}
    assert sum(per_q.values()) == 13


def test_teacher_lm_annotations_add_columns():
    aug = RationaleAugmenter(ScriptedTeacher(), "coin_flip", annotations=True)
    kept, _ = augment(scripted_records(2), aug, keep="all")
    assert kept["fundamentals"] == ["Parity of the number of flips."] * 2
    assert kept["common_errors"] == ["Parity of the number of flips."] * 2


def test_bad_augmenter_input_is_clear():
    with pytest.raises(ValueError, match="between 1 and 64"):
        RationaleAugmenter(ScriptedTeacher(), "coin_flip", degree=65)
    with pytest.raises(ValueError, match="temperature 0"):
        RationaleAugmenter(ScriptedTeacher(), "coin_flip", degree=4, temperature=0)
    with pytest.raises(FtcotError, match="lacks answer"):
        augment(
            Dataset.from_dict({"sample_index": [0], "question": ["q"]}),
            RationaleAugmenter(ScriptedTeacher(), "coin_flip"),
        )
    with pytest.raises(FtcotError, match="no rows"):
        augment(scripted_records().select([]), RationaleAugmenter(ScriptedTeacher(), "coin_flip"))


def test_transformers_teacher_batched_sampling_and_stop(tiny_gpt2, tmp_path):
    from ftcot_hf.teachers.transformers import TransformersTeacher

    teacher = TransformersTeacher(str(tiny_gpt2), batch_size=2)
    greedy = SamplingParams(temperature=0, max_tokens=12)
    prompts = ["Q: A coin is heads up.", "Q: Take the last letters of each words", "Q: 1 2"]
    out = dict(teacher.generate([Request(p, greedy) for p in prompts]))
    single = [next(iter(teacher.generate([Request(p, greedy)])))[1] for p in prompts]
    assert [out[i] for i in range(3)] == single  # left-padded batches equal one-by-one generation
    for gens in out.values():
        assert gens[0].finish_reason in ("stop", "length") and gens[0].completion_tokens <= 12
    sampled = dict(teacher.generate([Request(prompts[0], SamplingParams(temperature=1.0, max_tokens=8), n=4)]))
    assert len(sampled[0]) == 4 and len({g.text for g in sampled[0]}) > 1
    stop = out[0][0].text[3:6] if len(out[0][0].text) > 6 else None
    if stop:
        cut = dict(teacher.generate([Request(prompts[0], SamplingParams(max_tokens=12, stop=(stop,)))]))
        text = cut[0][0].text
        assert stop not in text and out[0][0].text.startswith(text) and len(text) < len(out[0][0].text)
        assert cut[0][0].finish_reason == "stop"
    cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
    list(cached.generate([Request(p, greedy) for p in prompts]))
    list(cached.generate([Request(p, greedy) for p in prompts]))
    assert cached.calls == 3


def test_ftcot_teach_cli_writes_a_loadable_rationale_dataset(tiny_gpt2, mirror, tmp_path, capsys):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from ftcot_hf.cli import main

    out = tmp_path / "rationales"
    argv = ["teach", "--tasks", "coin_flip", "--teacher", "transformers", "--model", str(tiny_gpt2),
            "--keep", "all", "--limit", "3", "--data_dir", str(mirror), "--cache_dir", str(tmp_path / "c.sqlite"),
            "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| coin_flip |" in printed and "Saved to" in printed
    ds = load_dataset(str(out), "coin_flip", cache_dir=str(tmp_path / "hf"))
    assert ds["train"].num_rows == 3 and ds["test"].num_rows == 150
    assert set(ds["train"]["sample_index"]) == {1, 2, 3}  # the first three train questions
    card = DatasetCard.load(out / "README.md")
    assert "Zero-shot-CoT" in card.text and "| degree D (samples per question) | 1 |" in card.text
    report = (out / "yield_report.json").read_text()
    assert '"samples": 3' in report
    # A second run is served from the request cache.
    assert main(argv) == 0
