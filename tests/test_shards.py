"""Teaching beyond one machine (issue 30 part 3): ``ftcot teach --num_shards N --shard_index I`` parts merged by
``ftcot merge`` into the dataset one run writes (the same Parquet bytes, card and yield report), their caches
merged, bad merges refused with one line; ``ftcot run``'s teach stage as a part; Ray Data actors writing the same
parts; and the Slurm / Kubernetes scripts of docs/sharding.md run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from ftcot_hf.cli import main
from tests.fake_openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_hf_home(monkeypatch, tmp_path):
    """The parts' default caches go under $HF_HOME: a fresh one per test."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("FTCOT_CACHE", raising=False)


def _recorded(mirror: Path, *extra: str) -> list[str]:
    return ["teach", "--tasks", "coin_flip", "last_letter_concatenation", "--limit", "10", "--data_dir", str(mirror),
            *extra]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _teach_parts(argv: list[str], tmp_path: Path, n: int, name: str = "part") -> list[Path]:
    parts = []
    for i in range(n):
        out = tmp_path / f"{name}-{i}"
        assert main([*argv, "--num_shards", str(n), "--shard_index", str(i), "--output_dir", str(out)]) == 0
        parts.append(out)
    return parts


def test_three_parts_merged_are_the_one_run_and_their_caches_answer_it(mirror, tmp_path, capsys):
    argv = _recorded(mirror)
    assert main([*argv, "--output_dir", str(tmp_path / "whole"), "--cache_dir", str(tmp_path / "whole.sqlite")]) == 0
    parts = _teach_parts(argv, tmp_path, 3)
    caches = sorted((tmp_path / "hf" / "ftcot").glob("teacher_cache.shard-*-of-00003.sqlite"))
    assert len(caches) == 3  # each part its own cache
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert main(["merge", str(parts[2]), str(parts[0]), str(parts[1]), "--output_dir", str(merged), "--cache",
                 "--cache_dir", str(tmp_path / "merged.sqlite")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "Merged 3 request caches" in printed and "40 requests added" in printed

    # the same files byte for byte: rows, order, test split (content-hashed names), card, summed yield report
    assert _files(merged) == _files(tmp_path / "whole")
    report = json.loads((merged / "yield_report.json").read_text())
    for r in report["reports"]:
        assert r["questions"] == 10 and r["requests"] == 20 and r["shard"] is None
        one = json.loads((parts[0] / "yield_report.json").read_text())
        assert [p["shard"] for p in one["reports"]][0] == {"index": 0, "num_shards": 3, "start": 0, "end": 4,
                                                           "questions": 10}  # fmt: skip
    rows = load_dataset(str(merged), "coin_flip", split="train")
    assert rows["sample_index"] == load_dataset(str(tmp_path / "whole"), "coin_flip", split="train")["sample_index"]

    # the merged cache answers the whole run: nothing is asked again
    assert main([*argv, "--output_dir", str(tmp_path / "again"), "--cache_dir", str(tmp_path / "merged.sqlite")]) == 0
    out = capsys.readouterr().out
    assert out.count(": 0 requests sent, 20 samples from the cache") == 2


def test_three_parts_on_the_openai_server_merged_are_the_one_run(mirror, tmp_path, capsys):
    with FakeOpenAIServer() as server:
        argv = ["teach", "--tasks", "coin_flip", "--limit", "7", "--teacher", "openai", "--model", "m", "--base_url",
                server.base_url, "--degree", "2", "--keep", "all", "--data_dir", str(mirror),
                "--price_input_per_mtok", "1", "--price_output_per_mtok", "2"]  # fmt: skip
        assert main([*argv, "--output_dir", str(tmp_path / "whole"), "--cache_dir", str(tmp_path / "w.sqlite")]) == 0
        sent = len(server.requests)
        parts = _teach_parts(argv, tmp_path, 3)  # 3, 2 and 2 questions
        assert len(server.requests) == 2 * sent
        caches = [str(p) for p in sorted((tmp_path / "hf" / "ftcot").glob("teacher_cache.shard-*.sqlite"))]
        merged = tmp_path / "merged"
        assert main(["merge", *map(str, parts), "--output_dir", str(merged), "--cache", *caches, "--cache_dir",
                     str(tmp_path / "m.sqlite")]) == 0  # fmt: skip
        assert _files(merged) == _files(tmp_path / "whole")
        [report] = json.loads((merged / "yield_report.json").read_text())["reports"]
        assert (report["questions"], report["samples"], report["requests"]) == (7, 14, sent)
        assert report["cost"] > 0 and report["stages"]["rationale"]["requests"] + report["stages"]["answer"][
            "requests"] == sent  # fmt: skip
        assert main([*argv, "--output_dir", str(tmp_path / "again"), "--cache_dir", str(tmp_path / "m.sqlite")]) == 0
        assert len(server.requests) == 2 * sent  # the merged cache answered every request


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "questions 5-7 of 10 are in no part given (part 1 of 3 missing)"),
        ("twice", "are given twice"),
        ("settings", "different settings (keep: 'correct' vs 'all')"),
        ("whole", "is not a part of a sharded run"),
        ("other_split", "cut into different numbers of parts"),
        ("cache", "no request cache at"),
    ],
)
def test_a_bad_merge_is_one_line_and_exit_2(case, words, mirror, tmp_path, capsys):
    argv = ["teach", "--tasks", "coin_flip", "--limit", "10", "--data_dir", str(mirror)]
    parts = [str(p) for p in _teach_parts(argv, tmp_path, 3)]
    extra: list[str] = []
    if case == "missing":
        parts = [parts[0], parts[2]]
    elif case == "twice":
        shutil.copytree(parts[1], tmp_path / "copy")
        parts.append(str(tmp_path / "copy"))
    elif case == "settings":
        assert main([*argv, "--keep", "all", "--num_shards", "3", "--shard_index", "1", "--output_dir",
                     str(tmp_path / "odd")]) == 0  # fmt: skip
        parts[1] = str(tmp_path / "odd")
    elif case == "whole":
        assert main([*argv, "--output_dir", str(tmp_path / "whole")]) == 0
        parts.append(str(tmp_path / "whole"))
    elif case == "other_split":
        parts = [parts[0], *map(str, _teach_parts(argv, tmp_path, 2, name="two"))]
    else:
        extra = ["--cache", str(tmp_path / "nowhere.sqlite")]
    capsys.readouterr()
    assert main(["merge", *parts, "--output_dir", str(tmp_path / "merged"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ftcot: error: ftcot merge") and words in err[0], err
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--num_shards", "3", "--shard_index", "3"], "--shard_index must be between 0 and --num_shards - 1 = 2"),
        (["--num_shards", "0"], "--num_shards must be a number of parts >= 1"),
        (["--num_shards", "2", "--resample_until", "1", "--max_extra_samples", "4", "--degree", "2"],
         "--resample_until spends --max_extra_samples over all questions"),
        (["--num_shards", "4", "--shard_index", "3", "--limit", "3"], "part 3 would be empty"),
    ],
)
def test_bad_shard_flags_are_one_line_and_exit_2(flags, words, mirror, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["teach", "--tasks", "coin_flip", "--data_dir", str(mirror), "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_ftcot_run_teaches_its_part_and_stops_before_training(tiny_gpt2, mirror, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["run", "--student", str(tiny_gpt2), "--tasks", "coin_flip", "--limit_train", "6", "--data_dir",
            str(mirror), "--output_dir", str(run), "--num_shards", "2"]  # fmt: skip
    for i in (0, 1):
        assert main([*argv, "--shard_index", str(i)]) == 0
    err = capsys.readouterr().err
    assert "training waits for every part" in err and "ftcot merge" in err
    assert not (run / "student").exists() and not (run / "rationales").exists()
    parts = sorted(str(p) for p in run.glob("rationales.shard-*-of-00002"))
    assert len(parts) == 2
    assert main(["merge", *parts, "--output_dir", str(tmp_path / "merged")]) == 0
    assert main(["teach", "--tasks", "coin_flip", "--limit", "6", "--data_dir", str(mirror), "--output_dir",
                 str(tmp_path / "whole")]) == 0  # fmt: skip
    whole = load_dataset(str(tmp_path / "whole"), "coin_flip", split="train")
    assert load_dataset(str(tmp_path / "merged"), "coin_flip", split="train").to_list() == whole.to_list()


RAY_SCRIPT = """
import os, sys
import ray
from ftcot_hf.teach.ray_data import RayRationaleAugmenter, questions
from ftcot_hf.teach import TeachConfig

ray.init(num_cpus=2, include_dashboard=False)
config = TeachConfig(tasks=["coin_flip"], limit=10, data_dir=sys.argv[1], cache_dir=sys.argv[2])
ds = ray.data.range(questions(config)).map_batches(
    RayRationaleAugmenter, fn_constructor_kwargs={"config": config, "output_dir": sys.argv[3]}, batch_size=4,
    concurrency=2, num_cpus=0.5)
print(sorted((r["start"], r["end"]) for r in ds.take_all()))
"""


def test_ray_data_actors_write_the_parts_ftcot_merge_reads(mirror, tmp_path, capsys):
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed (pip install 'ftcot-hf[ray]')")
    caches, parts = tmp_path / "caches" / "c.sqlite", tmp_path / "parts"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", RAY_SCRIPT, str(mirror), str(caches), str(parts)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[(0, 4), (4, 8), (8, 10)]" in proc.stdout
    slots = sorted(str(p) for p in caches.parent.glob("c.ray-slot-*.sqlite"))
    assert 1 <= len(slots) <= 2  # one cache per actor
    argv = ["teach", "--tasks", "coin_flip", "--limit", "10", "--data_dir", str(mirror)]
    assert main([*argv, "--output_dir", str(tmp_path / "whole"), "--cache_dir", str(tmp_path / "w.sqlite")]) == 0
    assert main(["merge", *map(str, sorted(parts.iterdir())), "--output_dir", str(tmp_path / "merged"), "--cache",
                 *slots, "--cache_dir", str(tmp_path / "m.sqlite")]) == 0  # fmt: skip
    assert _files(tmp_path / "merged") == _files(tmp_path / "whole")
    capsys.readouterr()
    assert main([*argv, "--output_dir", str(tmp_path / "again"), "--cache_dir", str(tmp_path / "m.sqlite")]) == 0
    assert ": 0 requests sent, 20 samples from the cache" in capsys.readouterr().out


# -- docs/sharding.md: its scripts run as a user runs them ---------------------------------------------------------
DOC = REPO / "docs" / "sharding.md"


def _blocks(language: str) -> dict[str, str]:
    """The doc's code blocks fenced as ```<language> <file name>, by file name."""
    return dict(re.findall(rf"```{language} (\S+)\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S))


def _env(server: FakeOpenAIServer, tmp_path: Path, mirror: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # where `ftcot` is installed beside this Python
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TEACHER_URL": server.base_url,
            "TEACHER_MODEL": "m", "FTCOT_DATA_MIRROR": str(mirror), "HF_HOME": str(tmp_path / "hf"),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def test_the_slurm_job_array_of_the_docs_runs(mirror, tmp_path):
    scripts = _blocks("bash")
    assert {"teach.sbatch", "merge.sbatch"} <= set(scripts)
    array = re.search(r"#SBATCH --array=0-(\d+)", scripts["teach.sbatch"])
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    with FakeOpenAIServer() as server:
        env = _env(server, tmp_path, mirror)
        for i in range(int(array.group(1)) + 1):  # what Slurm runs, one array task after the other
            proc = subprocess.run(["bash", "teach.sbatch"], cwd=tmp_path, env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
        sent = len(server.requests)
        proc = subprocess.run(["bash", "merge.sbatch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Merged 4 parts" in proc.stdout and "Merged 4 request caches" in proc.stdout
        assert len(server.requests) == sent
    [report] = json.loads((tmp_path / "rationales" / "yield_report.json").read_text())["reports"]
    assert report["questions"] == 350 and report["requests"] == sent  # coin_flip's train split, every part


def test_the_kubernetes_indexed_job_of_the_docs_runs(mirror, tmp_path):
    manifests = list(yaml.safe_load_all(_blocks("yaml")["teach-job.yaml"]))
    teach, merge = (m for m in manifests if m["kind"] == "Job")
    assert teach["spec"]["completionMode"] == "Indexed"

    def run(job: dict, index: int | None, env: dict[str, str]) -> subprocess.CompletedProcess:
        [container] = job["spec"]["template"]["spec"]["containers"]
        mount = container["volumeMounts"][0]["mountPath"]
        own = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        own = {k: v.replace(mount, str(tmp_path / "data")) for k, v in own.items() if k not in ("TEACHER_URL",)}
        command = [c.replace(mount, str(tmp_path / "data")) for c in container["command"] + container.get("args", [])]
        extra = {} if index is None else {"JOB_COMPLETION_INDEX": str(index)}
        return subprocess.run(command, env={**env, **own, **extra}, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    with FakeOpenAIServer() as server:
        env = _env(server, tmp_path, mirror)
        for i in range(teach["spec"]["completions"]):
            proc = run(teach, i, env)
            assert proc.returncode == 0, proc.stderr[-3000:]
        proc = run(merge, None, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Merged 4 parts" in proc.stdout
    [report] = json.loads((tmp_path / "data" / "rationales" / "yield_report.json").read_text())["reports"]
    assert report["questions"] == 350
