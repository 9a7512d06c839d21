"""ARCHITECTURE.md's "Where to add things" table, kept true: the number of files each extension touches is what it
states, and each extension works from the CLI with only those files.

- From outside the package: one file of a user's (written here into tmp_path) registering a task with its own answer
  type, a student format and a teacher backend, loaded as a plug-in (``FTCOT_PLUGINS`` or the ``ftcot_hf.plugins``
  entry point group), teaches, trains and evaluates through ``ftcot run``; a backend reached as ``module:Class``.
- An option: a field added to ``EvalConfig``, ``PushConfig``, ``TeachConfig``, ``FineTuneCoTConfig`` or
  ``DistillConfig`` (a subclass standing for the edited class, in a fresh interpreter, since ``ftcot run``'s config
  is built from them at import) is a flag of its command and of ``ftcot run``, a key of both YAMLs, in the config the
  run builds for the stage and in the stage's fingerprint.
- In the package: a built-in task is its module plus its name in ``BUILTIN_TASKS``; a built-in backend its module
  plus its line in ``TEACHERS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from ftcot_hf.students.formats import FORMATS
from ftcot_hf.tasks import BUILTIN_TASKS, TASKS
from ftcot_hf.tasks.answers import ANSWER_TYPES
from ftcot_hf.teachers import TEACHERS
from tests.doubles import installed_entry_point, write_jsonl

REPO = Path(__file__).resolve().parents[1]

FILES = {
    "a user dataset": "0",
    "a paper-style task from pinned files": "2",
    "a task from outside the package": "1",
    "a teacher backend": "2",
    "a teacher backend from outside the package": "1",
    "an answer type": "1",
    "a student format": "1",
    "an option of `ftcot teach`, `eval` or `push`": "1",
    "an option of `ftcot train`": "2",
    "an option of `ftcot distill`": "2",
}
"""What the table states, row by row (a change to the table is a change here, and to what the tests below show)."""


def test_the_table_states_the_files_each_extension_touches():
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Where to add things", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    header, *rows = rows
    assert header[:2] == ["| to add", "files"]
    assert {row[0].removeprefix("| "): row[1] for row in rows} == FILES


# -- a plug-in from outside the package -------------------------------------------------------------------------------
PLUGIN = '''
"""A user's ftcot plug-in, outside the package: a task with an answer type of its own, a format and a teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ftcot_hf import AnswerParser, Task, Teacher, register_answer_type, register_task, register_teacher
from ftcot_hf.students.formats import make_format
from ftcot_hf.teachers.base import Generation


@register_answer_type
@dataclass(frozen=True)
class ParityAnswer(AnswerParser):
    """'even' or 'odd', wherever the text says it."""

    name: ClassVar[str] = "parity"

    def candidates(self, text, mode="paper"):
        return [w for w in text.lower().replace(".", " ").split() if w in ("even", "odd")]

    def canonical_gold(self, value, choices=None):
        text = str(value).strip().lower()
        if text not in ("even", "odd"):
            raise ValueError(f"{value!r} is neither even nor odd")
        return text


register_task(Task.from_dataset(str(Path(__file__).with_name("parity.jsonl")), question_column="q",
                                answer_column="a", answer_type="parity", task_name="parity", test_size=4))
make_format("ft_cot", answer_sep=" =>", name="ft_cot_arrow", register=True)


@register_teacher("parity_oracle")
class ParityOracle(Teacher):
    """Names the parity of the question's number, right every time."""

    model = "parity-oracle"

    @classmethod
    def from_config(cls, *, model=None, base_url=None, tasks=(), data_dir=None):
        return cls()

    def generate(self, requests):
        for pos, request in enumerate(requests):
            number = next(int(w) for w in request.prompt.split() if w.isdigit())
            word = "even" if number % 2 == 0 else "odd"
            text = f" {word}." if "Therefore" in request.prompt else f" {number} is {word}."
            yield pos, [Generation(text, "stop", 8, 4) for _ in range(request.n)]
'''
MODULE = "my_ftcot_plugin"


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> Iterator[Path]:
    """The plug-in module and its data in a folder on sys.path (not installed); every registry as it was after."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(PLUGIN, encoding="utf-8")
    write_jsonl(folder / "parity.jsonl", [{"q": f"Is {n} even or odd?", "a": "even" if n % 2 == 0 else "odd"}
                                          for n in range(1, 25)])  # fmt: skip
    monkeypatch.syspath_prepend(str(folder))
    registries = (TASKS, ANSWER_TYPES, FORMATS, TEACHERS)
    before = [set(r) for r in registries]
    yield folder
    sys.modules.pop(MODULE, None)
    for registry, names in zip(registries, before, strict=True):
        for name in set(registry) - names:
            registry.unregister(name)


def test_a_task_answer_type_format_and_teacher_from_one_file_outside_run_from_the_cli(
    plugin, tiny_gpt2, mirror, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("FTCOT_PLUGINS", MODULE)
    out = tmp_path / "run"
    code = main(["run", "--tasks", "parity", "--teacher", f"{MODULE}:ParityOracle", "--format", "ft_cot_arrow",
                 "--student", str(tiny_gpt2), "--num_train_epochs", "1", "--eval_max_new_tokens", "4",
                 "--eval_batch_size", "4", "--eval_untrained", "false", "--validation_size", "0", "--cpu_threads",
                 "1", "--cache_dir", str(tmp_path / "cache.sqlite"), "--data_dir", str(mirror), "--output_dir",
                 str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["tasks"]["parity"]["kept"] == summary["tasks"]["parity"]["questions"] == 20  # the oracle: all right
    assert summary["tasks"]["parity"]["n"] == 4
    recorded = json.loads((out / "rationales" / "yield_report.json").read_text())["tasks"]["parity"]
    assert recorded["answer_type"] == "parity"  # the plug-in's answer type parsed the teacher's answers
    from datasets import load_dataset

    train = load_dataset(str(out / "rationales"), "parity", split="train")
    assert train[0]["rationale"].endswith(("is even.", "is odd."))
    [result] = json.loads((out / "eval" / "parity" / "results.json").read_text())["results"]
    assert result["format"] == "ft_cot_arrow"  # the plug-in's format (answers after " =>") trained and scored


def test_a_plugin_by_entry_point_and_a_bad_plugin_in_one_line(plugin, tmp_path, monkeypatch, capsys):
    """An installed package declares ``[project.entry-points."ftcot_hf.plugins"] mine = "my_ftcot_plugin"``."""
    monkeypatch.syspath_prepend(str(installed_entry_point(tmp_path / "site", "ftcot_hf.plugins", "mine", MODULE)))
    out = tmp_path / "rationales"
    code = main(["teach", "--tasks", "parity", "--teacher", "parity_oracle", "--limit", "6", "--output_dir", str(out),
                 "--cache_dir", str(tmp_path / "cache.sqlite")])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    assert any((out / "parity").glob("train-*.parquet"))
    monkeypatch.setenv("FTCOT_PLUGINS", "no_such_plugin_xyz")
    capsys.readouterr()
    assert main(["tasks"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Plug-in 'no_such_plugin_xyz' (from $FTCOT_PLUGINS) cannot be imported" in err


# -- an option: one field --------------------------------------------------------------------------------------------
FIELDS = '''
import dataclasses, json, sys
from pathlib import Path

import yaml


def with_field(module, cls_name, name, default):
    """The class with one more field, standing for the class edited in its own file (same module and name)."""
    cls = getattr(module, cls_name)
    new = dataclasses.make_dataclass(cls_name, [(name, type(default), dataclasses.field(
        default=default, metadata={"help": f"A new option of {cls_name}."}))], bases=(cls,))
    new.__module__, new.__qualname__, new.__doc__ = cls.__module__, cls.__qualname__, cls.__doc__
    setattr(module, cls_name, new)


import ftcot_hf.evaluation.cli as eval_cli
import ftcot_hf.hub.cli as hub_cli
import ftcot_hf.teach.cli as teach_module
import ftcot_hf.training.config as train_config
import ftcot_hf.training.distill_config as distill_config

with_field(eval_cli, "EvalConfig", "new_eval_option", 1)
with_field(hub_cli, "PushConfig", "new_push_option", "a")
with_field(teach_module, "TeachConfig", "new_teach_option", 1.5)
with_field(train_config, "FineTuneCoTConfig", "new_train_option", 2)
with_field(distill_config, "DistillConfig", "new_distill_option", 0.5)

import contextlib, io

from ftcot_hf.cli import main
from ftcot_hf.pipeline.run import parse_run_args, validate
from ftcot_hf.pipeline.stages import distill_inputs, eval_inputs, fingerprint, teach_inputs, train_inputs
from ftcot_hf.utils.parser import command_parser

tmp, mirror = Path(sys.argv[1]), sys.argv[2]
out = {}
for command in ("eval", "push", "teach", "train", "distill", "run"):
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        main([command, "--help"])
    out[command + "_help"] = sorted(set(__import__("re").findall(r"--(?:distill_)?new_\\w+", text.getvalue())))
(tmp / "eval.yaml").write_text(yaml.safe_dump({"model": "gpt2", "new_eval_option": 7}))
(parsed,) = command_parser((eval_cli.EvalConfig,), [], prog="ftcot eval").parse(["--config", str(tmp / "eval.yaml")])
out["eval_yaml"] = parsed.new_eval_option
(tmp / "run.yaml").write_text(yaml.safe_dump({
    "output_dir": str(tmp / "run"), "data_dir": mirror, "push_to_hub": True,
    "eval": {"new_eval_option": 7}, "hub": {"new_push_option": "b", "dataset_id": "me/r", "model_id": "me/s-{task}"},
    "teach": {"new_teach_option": 2.5}, "train": {"new_train_option": 3},
    "distill": {"method": "on_policy", "teacher": "smollm2-135m-instruct", "new_distill_option": 0.75}}))
# offline: what is checked here is the plan, not the Hub (the module: `ftcot_hf.pipeline.run` is also a function)
sys.modules["ftcot_hf.pipeline.run"].check_push_access = lambda ids: None
config = parse_run_args(["--config", str(tmp / "run.yaml")])
plan = validate(config)
out["plan"] = {"eval": plan.evals["eval"]["coin_flip"].new_eval_option,
               "push": [plan.pushes["rationales"].new_push_option, plan.pushes["coin_flip"].new_push_option],
               "teach": plan.teach.new_teach_option, "train": plan.train["coin_flip"].new_train_option,
               "distill": plan.distill["coin_flip"].new_distill_option}
other = validate(parse_run_args(["--config", str(tmp / "run.yaml"), "--new_eval_option", "8", "--new_teach_option",
                                 "3.5", "--new_train_option", "4", "--distill_new_distill_option", "0.25"]))
out["fingerprints_differ"] = {
    "eval": fingerprint(eval_inputs(plan.config)) != fingerprint(eval_inputs(other.config)),
    "teach": fingerprint(teach_inputs(plan.teach, plan.tasks)) != fingerprint(teach_inputs(other.teach, plan.tasks)),
    "train": fingerprint(train_inputs(plan.config)) != fingerprint(train_inputs(other.config)),
    "distill": fingerprint(distill_inputs(plan.config)) != fingerprint(distill_inputs(other.config)),
}
print(json.dumps(out))
'''


def test_a_field_on_a_commands_config_is_its_flag_the_runs_flag_and_yaml_and_reaches_the_stage(tmp_path, mirror):
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", FIELDS, str(tmp_path), str(mirror)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["eval_help"] == ["--new_eval_option"]
    assert out["push_help"] == ["--new_push_option"]
    assert out["teach_help"] == ["--new_teach_option"]
    assert out["train_help"] == ["--new_train_option"]
    assert out["distill_help"] == ["--new_distill_option"]
    # a run's distill flags carry the section's prefix; the field's own name is the alias that help shows beside it
    assert out["run_help"] == ["--distill_new_distill_option", "--new_distill_option", "--new_eval_option",
                               "--new_push_option", "--new_teach_option", "--new_train_option"]  # fmt: skip
    assert out["eval_yaml"] == 7
    assert out["plan"] == {"eval": 7, "push": ["b", "b"], "teach": 2.5, "train": 3, "distill": 0.75}
    assert out["fingerprints_differ"] == {"eval": True, "teach": True, "train": True, "distill": True}


# -- in the package ---------------------------------------------------------------------------------------------------
def test_a_builtin_task_is_its_module_and_its_name_and_a_builtin_backend_its_module_and_its_line():
    for name in BUILTIN_TASKS:  # the registry's entry is made from the name: no other list to add it to
        assert importlib.import_module(f"ftcot_hf.tasks.{name}").TASK is TASKS[name] and TASKS[name].name == name
    backends = {name: entry.partition(":")[0] if isinstance(entry, str) else entry.__module__
                for name, entry in TEACHERS._entries.items()}  # fmt: skip
    builtin = {name: module for name, module in backends.items() if module.startswith("ftcot_hf.")}
    assert {"replay", "transformers", "openai", "vllm"} <= set(builtin)
    for name, module in builtin.items():  # found, not imported: a backend's dependencies load when it is used
        assert module.startswith("ftcot_hf.teachers.") and importlib.util.find_spec(module) is not None, name
