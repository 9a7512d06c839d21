"""The one task edge (``resolve_tasks``) and ``--rationales`` (``--dataset`` its deprecated name) in train / eval."""

from __future__ import annotations

import json

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError, UnknownTaskError
from ftcot_hf.evaluation.cli import EvalConfig
from ftcot_hf.tasks.args import TaskDatasetArgs, resolve_tasks
from ftcot_hf.training.data import DataArgs
from tests.doubles import teach_user_dataset

USER_FLAGS = ["--question_column", "problem", "--answer_column", "solution", "--answer_type", "number"]


@pytest.fixture
def taught(arith_jsonl, tmp_path):
    """A rationale folder of `ftcot teach` over a user's dataset (it records the task: the source file not needed)."""
    folder = teach_user_dataset(arith_jsonl, tmp_path / "rationales", test_size=0.25)
    arith_jsonl.unlink()  # what follows reads the folder only
    return folder


def test_resolve_tasks_registered_recorded_and_your_own(taught, tmp_path):
    assert [t.name for t in resolve_tasks(["coin_flip", "multiarith"])] == ["coin_flip", "multiarith"]
    [mine] = resolve_tasks(["my_arith"], TaskDatasetArgs(), rationales=taught)
    assert mine.name == "my_arith" and not mine.builtin and mine.answer.name == "number"
    with pytest.raises(UnknownTaskError):
        resolve_tasks(["my_arith"])  # not registered, and no rationale folder recording it
    data = tmp_path / "own.jsonl"
    data.write_text("".join(json.dumps({"q": f"{i}+1?", "a": i + 1}) + "\n" for i in range(6)))
    own = TaskDatasetArgs(dataset=str(data), question_column="q", answer_column="a", answer_type="number",
                          task_name="own", test_size=2)  # fmt: skip
    assert [t.name for t in resolve_tasks(["coin_flip"], own)] == ["own"]  # the column flags define the task


def test_eval_config_does_no_io_when_built(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    config = EvalConfig(model="m", dataset=str(missing), question_column="q", answer_column="a",
                        answer_type="number", task_name="t")  # fmt: skip
    assert config.dataset == str(missing)  # built: nothing read yet
    with pytest.raises(FtcotError, match="nowhere.jsonl"):
        config.tasks  # noqa: B018 -- resolved on first use
    assert EvalConfig(model="m", task=["no_such_task"]).task == ["no_such_task"]
    with pytest.raises(UnknownTaskError):
        EvalConfig(model="m", task=["no_such_task"]).tasks  # noqa: B018


def test_rationales_and_the_deprecated_dataset_spelling(taught, caplog):
    config = EvalConfig(model="m", task=["my_arith"], dataset=str(taught))
    assert f"ftcot eval --dataset {taught}: a rationale dataset is --rationales now" in caplog.text
    assert (config.rationales, config.dataset) == (str(taught), None)
    assert [t.name for t in config.tasks] == ["my_arith"]
    caplog.clear()
    args = DataArgs(dataset=str(taught))
    assert "ftcot train --dataset" in caplog.text and "deprecated" in caplog.text
    assert args.rationales == str(taught)
    with pytest.raises(FtcotError, match="give it once, as --rationales"):
        DataArgs(dataset=str(taught), rationales=str(taught))
    own = DataArgs(dataset="x.jsonl", question_column="q")  # your own data: --dataset keeps its meaning
    assert (own.dataset, own.rationales) == ("x.jsonl", None)


def test_ftcot_eval_and_train_on_a_rationale_folder(taught, tiny_gpt2, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tiny_gpt2), "--rationales", str(taught), "--task", "my_arith",
                 "--max_new_tokens", "3", "--output_dir", str(out), "--paper_row", "none"]) == 0  # fmt: skip
    result = json.loads((out / "results.json").read_text())
    assert result["results"][0]["task"] == "my_arith" and result["results"][0]["n"] == 5
    assert result["config"]["rationales"] == str(taught)
    student = tmp_path / "student"
    code = main(["train", "--student", str(tiny_gpt2), "--rationales", str(taught), "--task", "my_arith",
                 "--output_dir", str(student), "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
                 "--max_train_samples", "8", "--disable_tqdm", "true", "--cpu_threads", "1",
                 "--report_to", "none"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads((student / "train_summary.json").read_text())["task"] == "my_arith"
