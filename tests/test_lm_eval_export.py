"""`ftcot export-lm-eval`: the folder it writes, and lm-eval scoring a student exactly as `ftcot eval` does."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from ftcot_hf.cli import main

MAX_NEW_TOKENS = 24
LIMIT = 6


def _yaml(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 -- a SafeLoader subclass


def _utils(folder: Path):
    spec = importlib.util.spec_from_file_location(f"ftcot_lm_eval_utils_{abs(hash(folder))}", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parquet_rows(path: Path) -> list[dict]:
    from datasets import Dataset

    return list(Dataset.from_parquet(str(path)))


@pytest.fixture(scope="module")
def user_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "sums.jsonl"
    rows = [{"problem": f"What is {a} plus {a + 3}?", "solution": str(2 * a + 3)} for a in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


USER_FLAGS = ["--question_column", "problem", "--answer_column", "solution", "--answer_type", "number",
              "--task_name", "my_sums", "--test_size", "4"]  # fmt: skip


def test_export_writes_an_offline_task_folder(mirror, tmp_path, capsys):
    from ftcot_hf.students.formats import get_format
    from ftcot_hf.tasks import score_completion

    out = tmp_path / "lm_tasks"
    rc = main(["export-lm-eval", str(out), "--tasks", "coin_flip", "addsub", "--limit", "3", "--data_dir",
               str(mirror), "--max_new_tokens", "100"])  # fmt: skip
    assert rc == 0
    assert "lm_eval --model hf" in capsys.readouterr().out
    written = {p.name for p in out.iterdir()}
    assert written >= {"ftcot_coin_flip.yaml", "ftcot_addsub.yaml", "utils.py", "ftcot_coin_flip.test.parquet",
                       "ftcot_addsub.test.parquet", "ftcot_tasks.json"}  # fmt: skip
    spec = _yaml(out / "ftcot_coin_flip.yaml")
    assert spec["task"] == "ftcot_coin_flip" and spec["output_type"] == "generate_until"
    assert spec["dataset_path"] == "parquet" and spec["test_split"] == "test"
    data = Path(spec["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data.parent == out.resolve()
    assert spec["doc_to_text"] == "{{prompt}}" and spec["process_results"] == "!function utils.process_results"
    assert spec["generation_kwargs"] == {"do_sample": False, "temperature": 0.0, "max_gen_toks": 100,
                                         "until": ["END"]}  # fmt: skip
    rows = _parquet_rows(data)
    assert len(rows) == 3
    fmt = get_format("ft_cot")
    for r in rows:
        assert r["prompt"] == fmt.prompt(r) == f"{r['question'].strip()} ###"
    utils = _utils(out)
    addsub = _parquet_rows(out / "ftcot_addsub.test.parquet")[0]
    for doc, completion in [
        (rows[0], f" The coin was flipped. --> {rows[0]['answer']} "),
        (rows[0], " The coin was flipped. --> maybe "),
        (addsub, f" 70 - 27 = 43. --> {addsub['answer']} "),
        (addsub, " So the answer is 12 "),
    ]:
        expected = score_completion(doc["ftcot_task"], completion, doc["answer"], prefix="-->", mode="paper")
        assert utils.process_results(doc, [completion])["acc"] == float(expected["correct"])
        assert utils.prediction(doc, completion) == expected["prediction"]


def test_export_a_user_dataset(tmp_path, user_dataset):
    from ftcot_hf.tasks.answers import make_parser, score_with_parser

    out = tmp_path / "lm_user"
    assert main(["export-lm-eval", str(out), "--dataset", str(user_dataset), *USER_FLAGS]) == 0
    rows = _parquet_rows(out / "ftcot_my_sums.test.parquet")
    assert len(rows) == 4 and not rows[0]["ftcot_builtin"] and rows[0]["ftcot_answer_type"] == "number"
    utils = _utils(out)
    completion = f" --> {rows[0]['answer']} "
    expected = score_with_parser(make_parser("number"), completion, rows[0]["answer"], prefix="-->")
    assert expected["correct"] and utils.process_results(rows[0], [completion])["acc"] == 1.0


def test_export_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    assert main(["export-lm-eval", str(tmp_path / "x"), "--tasks", "no_such_task"]) == 2
    assert "Unknown task 'no_such_task'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "datasets", None)  # a missing dependency: name the extra, exit 2
    assert main(["export-lm-eval", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ftcot-hf[lm_eval]" in err[0]


# --- lm-eval against `ftcot eval` ------------------------------------------------------------------------------


def _train_tiny(path: Path, texts: list[str], steps: int = 120) -> Path:
    """A few Adam steps of the tiny GPT-2 on ``"{q} ### --> {a} END"`` so it emits parsable, varied answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    encoded = [torch.tensor([tok(t)["input_ids"] + [tok.eos_token_id]]) for t in texts]
    model.train()
    for step in range(steps):
        ids = encoded[step % len(encoded)]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = path.parent / "trained"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.usefixtures("one_torch_thread")
def test_lm_eval_scores_as_ftcot_eval(mirror, tmp_path, tiny_gpt2, user_dataset, built):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed: pip install 'ftcot-hf[lm_eval]'")
    from lm_eval.tasks import TaskManager

    from ftcot_hf.evaluation.cli import EvalConfig, run_eval
    from ftcot_hf.evaluation.lm_eval_export import export_lm_eval
    from ftcot_hf.tasks.args import TaskDatasetArgs

    train = [f"{r['question']} ### --> {r['answer']} END" for t in ("coin_flip", "addsub")
             for r in built(t)["train"].select(range(12))]  # fmt: skip
    student = _train_tiny(Path(tiny_gpt2), train)
    out = tmp_path / "lm_tasks"
    user_task = TaskDatasetArgs(dataset=str(user_dataset), question_column="problem", answer_column="solution",
                                answer_type="number", task_name="my_sums", test_size=4).custom_task()  # fmt: skip
    export_lm_eval(out, ["coin_flip", "addsub"], data_dir=mirror, max_new_tokens=MAX_NEW_TOKENS, limit=LIMIT)
    export_lm_eval(out, [user_task], max_new_tokens=MAX_NEW_TOKENS)
    names = ["ftcot_coin_flip", "ftcot_addsub", "ftcot_my_sums"]
    lm = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={student},device=cpu,dtype=float32",
        tasks=names,
        task_manager=TaskManager(include_path=str(out)),
        batch_size=1,
        log_samples=True,
        random_seed=0,
    )
    common = dict(model=str(student), format="ft_cot", batch_size=1, max_new_tokens=MAX_NEW_TOKENS, paper_row="none")
    ours, _ = run_eval(EvalConfig(task=["coin_flip", "addsub"], limit=LIMIT, data_dir=str(mirror),
                                  output_dir=str(tmp_path / "eval"), **common), progress=False)  # fmt: skip
    mine, _ = run_eval(EvalConfig(dataset=str(user_dataset), question_column="problem", answer_column="solution",
                                  answer_type="number", task_name="my_sums", test_size=4,
                                  output_dir=str(tmp_path / "eval_user"), **common), progress=False)  # fmt: skip
    report = {}
    for name, result in zip(names, [*ours, *mine], strict=True):
        utils = _utils(out)
        samples = sorted(lm["samples"][name], key=lambda s: s["doc_id"])
        assert len(samples) == len(result.examples) == result.n
        for s, ex in zip(samples, result.examples, strict=True):
            assert s["arguments"][0][0] == ex["prompt"]  # the same prompt, token for token
            assert s["resps"][0][0] == ex["completion"]  # greedy, stopped at END: the same text
            assert utils.prediction(s["doc"], s["resps"][0][0]) == ex["prediction"]
            assert s["acc"] == float(ex["correct"])
        assert lm["results"][name]["acc,none"] == pytest.approx(result.accuracy)
        report[name] = (lm["results"][name]["acc,none"], result.accuracy)
    assert any(ex["prediction"] is not None for r in [*ours, *mine] for ex in r.examples)  # not all unparsable
    print("accuracy (lm-eval, ftcot eval):", report)
