"""`ftcot run`'s config is made of each command's own config: every option reachable, YAML sections, fingerprints
from the sections' fields, our options first in every command's --help."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftcot_hf.cli import main
from ftcot_hf.pipeline.config import (
    ADAPTERS_OWNED,
    NOT_FINGERPRINTED,
    SECTIONS,
    TEACH,
    TRAIN_OWNED,
    RunConfig,
)
from ftcot_hf.pipeline.run import parse_run_args
from ftcot_hf.pipeline.stages import eval_inputs, fingerprint, teach_inputs, train_inputs
from ftcot_hf.tasks import resolve_task
from ftcot_hf.teach import TeachConfig
from ftcot_hf.training.cli import StudentArgs
from ftcot_hf.training.config import FineTuneCoTConfig
from ftcot_hf.utils.parser import declared_fields
from tests.doubles import exits_2_in_one_line

REPO = Path(__file__).resolve().parents[1]
RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def test_every_option_of_teach_and_train_is_a_flag_of_run():
    teach_flags = TEACH._ftcot_flags
    for f in dataclasses.fields(TeachConfig):
        if f.name in teach_flags:
            assert teach_flags[f.name] in RUN_FIELDS
        else:  # what the run decides itself, once for all stages
            assert f.name in {"tasks", "split", "output_dir", "repo_id", "data_dir", "mode"} or f.name in RUN_FIELDS
    for f in dataclasses.fields(FineTuneCoTConfig):
        if f.init and f.name not in TRAIN_OWNED:
            assert f.name in RUN_FIELDS, f.name
    for f in dataclasses.fields(StudentArgs):  # TRL's ModelConfig + the GGUF file
        assert f.name in RUN_FIELDS or f.name in ADAPTERS_OWNED
    assert {"use_peft", "lora_r", "lora_target_parameters", "use_dora"} <= RUN_FIELDS


def test_the_distill_section_is_made_by_rule_and_holds_the_fields_it_always_held():
    from ftcot_hf.pipeline.distill_args import DISTILL, DISTILL_FIELDS, DISTILL_OWNED, DISTILL_TRL
    from ftcot_hf.pipeline.stages import distill_inputs
    from ftcot_hf.training.distill_config import DistillConfig

    # the hand-written list these replaced: the same fields, so a distill stage's fingerprint stays what it was
    assert DISTILL_FIELDS == {"beta", "temperature", "lmbda", "max_completion_length", "learning_rate",
                              "lr_scheduler_type", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                              "gradient_accumulation_steps", "top_p", "top_k", "gold_kwargs",
                              "loss_top_k"}  # fmt: skip
    assert set(DISTILL._ftcot_flags) == DISTILL_FIELDS
    assert all(f"distill_{name}" in RUN_FIELDS for name in DISTILL_FIELDS)
    assert DISTILL_OWNED <= declared_fields(DistillConfig) and not set(DISTILL_TRL) & declared_fields(DistillConfig)
    section = distill_inputs(RunConfig(distill="on_policy", distill_teacher="smollm2-135m-instruct"))["distill"]
    assert set(section) == DISTILL_FIELDS | {"method", "teacher", "teacher_url"}


def test_options_that_run_used_to_miss_reach_their_stage(tmp_path):
    config = parse_run_args(["--annotations", "true", "--trigger", "kojima", "--resample_until", "2",
                             "--max_extra_samples", "3", "--mode", "robust", "--replay_file", "r.jsonl",
                             "--format", "middle_fundamentals", "--warmup_steps", "7",
                             "--gradient_accumulation_steps", "2", "--sc_temperature", "0.5"])  # fmt: skip
    teach = config.teach_config(tmp_path)
    assert (teach.annotations, teach.trigger, teach.resample_until, teach.max_extra_samples, teach.mode,
            teach.replay_file) == (True, "kojima", 2, 3, "robust", "r.jsonl")  # fmt: skip
    train = config.train_config("coin_flip", tmp_path, bf16=False)
    assert (train.warmup_steps, train.gradient_accumulation_steps, train.format) == (7, 2, "middle_fundamentals")
    assert (train.learning_rate, train.num_train_epochs, train.max_length) == (1e-4, 1.5, 512)  # the run's defaults
    assert eval_inputs(config)["sc_temperature"] == 0.5


def test_yaml_sections_use_each_commands_own_names(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "tasks": ["multiarith"], "student": "gpt2",
        "teach": {"teacher": "openai", "model": "m", "base_url": ["http://localhost:8000/v1"], "limit": 5,
                  "degree": 4},
        "train": {"learning_rate": 3e-4, "warmup_steps": 2, "use_peft": True, "lora_r": 8},
        "eval": {"max_new_tokens": 20, "limit": 7, "untrained": False},
        "hub": {"private": True, "dataset_id": "me/r"},
    }))  # fmt: skip
    config = parse_run_args(["--config", str(path), "--lora_r", "4"])  # a flag beside the file wins
    assert (config.teacher, config.teacher_model, config.limit_train, config.degree) == ("openai", "m", 5, 4)
    assert (config.learning_rate, config.warmup_steps, config.use_peft, config.lora_r) == (3e-4, 2, True, 4)
    assert (config.eval_max_new_tokens, config.limit_test, config.eval_untrained) == (20, 7, False)
    assert (config.hub_private, config.hub_dataset_id, config.tasks) == (True, "me/r", ["multiarith"])
    assert config.section("teach")["model"] == "m" and config.section("eval")["limit"] == 7


@pytest.mark.parametrize(
    ("section", "expected"),
    [({"teach": {"modle": "m"}}, "unknown key `teach.modle`"),
     ({"teach": {"tasks": ["coin_flip"]}}, "`teach.tasks` is set by the run itself"),
     ({"train": {"output_dir": "x"}}, "`train.output_dir` is set by the run itself")],
)  # fmt: skip
def test_a_bad_yaml_key_is_one_line(tmp_path, capsys, section, expected):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(section))
    exits_2_in_one_line(["run", "--config", str(path)], capsys, expected)


def test_the_written_run_config_reads_back_to_the_same_stages(tmp_path):
    config = parse_run_args(["--teacher", "openai", "--teacher_model", "m", "--base_url", "http://h:1/v1",
                             "--warmup_steps", "3", "--lr_scheduler_type", "linear", "--eval_max_new_tokens", "9",
                             "--limit_train", "4", "--teacher_kwargs", '{"supports_n": false}'])  # fmt: skip
    path = tmp_path / "run_config.yaml"
    path.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    written = yaml.safe_load(path.read_text())
    assert written["teach"]["model"] == "m" and written["train"]["warmup_steps"] == 3
    assert "adam_beta1" not in written["train"]  # inherited options only where they differ from their defaults
    again = parse_run_args(["--config", str(path)])
    tasks = [resolve_task("coin_flip")]
    assert fingerprint(teach_inputs(again.teach_config(tmp_path), tasks)) == fingerprint(
        teach_inputs(config.teach_config(tmp_path), tasks)
    )
    assert fingerprint(train_inputs(again)) == fingerprint(train_inputs(config))
    assert fingerprint(eval_inputs(again)) == fingerprint(eval_inputs(config))


def test_every_train_field_is_in_the_fingerprint_but_speed_and_logging():
    base = fingerprint(train_inputs(RunConfig()))
    changed = {"warmup_steps": 3, "adam_beta2": 0.99, "lora_r": 4, "max_length": 256, "seed": 1,
               "neftune_noise_alpha": 5.0}  # fmt: skip
    for name, value in changed.items():
        assert fingerprint(train_inputs(RunConfig(**{name: value}))) != base, name
    for name in ("cpu_threads", "logging_steps", "dataloader_num_workers"):
        assert name in NOT_FINGERPRINTED["train"]
    assert fingerprint(train_inputs(RunConfig(cpu_threads=1, logging_steps=1))) == base
    assert fingerprint(eval_inputs(RunConfig(eval_batch_size=3))) == fingerprint(eval_inputs(RunConfig()))
    assert fingerprint(eval_inputs(RunConfig(eval_max_new_tokens=3))) != fingerprint(eval_inputs(RunConfig()))


def test_a_recipe_replaces_the_run_defaults_and_flags_beside_it_win(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 3.0e-4\nnum_train_epochs: 20\nwarmup_steps: 4\n")
    config = RunConfig(recipe=str(recipe), num_train_epochs=1)
    train = config.train_config("coin_flip", tmp_path, bf16=False)
    assert (train.learning_rate, train.num_train_epochs, train.warmup_steps) == (3e-4, 1, 4)
    assert train.max_length == 1024  # a recipe is a FineTuneCoTConfig YAML: its defaults, not the run's CPU ones
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1\n")
    with pytest.raises(Exception, match="unknown key.*learning_rat; did you mean `learning_rate`"):
        RunConfig(recipe=str(bad)).train_values()


def test_sections_cover_every_run_field():
    from ftcot_hf.pipeline.config import DATASET, RunArgs

    covered = {f.name for views in SECTIONS.values() for v in views for f in dataclasses.fields(v)}
    covered |= {f.name for f in dataclasses.fields(RunArgs)} | {f.name for f in dataclasses.fields(DATASET)}
    assert covered == RUN_FIELDS


def _help(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "ftcot_hf.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_shows_our_options_first_and_folds_the_inherited_ones():
    train = _help("train", "--help")
    first_screen = "\n".join(train.splitlines()[:60])
    assert "--student" in first_screen and "--config FILE.yaml" in first_screen
    assert "--adam_beta1" not in train and "see `ftcot train --help-all`" in train
    assert "--adam_beta1" in _help("train", "--help-all")
    assert "--warmup_steps" in _help("run", "--help-all")  # the README's and docs/run.md's `ftcot run --help-all`
    run = _help("run", "--help")
    assert "--config FILE.yaml" in run and "--teacher_model" in run and "--adam_beta1" not in run
    assert "Turn off --eval_untrained." in run  # not a copy of the positive flag's sentence
    assert "Teacher (the fields of `ftcot teach`" in run


def test_default_output_dir_names_the_task_and_the_student():
    assert RunConfig().output_dir == "runs/coin_flip-smollm2"  # docs/run.md's embedded default
    assert RunConfig(tasks=["multiarith", "svamp"], student="gpt2").output_dir == "runs/multiarith+svamp-gpt2"
    assert RunConfig(student="/models/Qwen3-0.6B/").output_dir == "runs/coin_flip-qwen3-0.6b"
    assert RunConfig(output_dir="mine").output_dir == "mine"


@pytest.mark.parametrize(
    ("env", "repo", "expected"),
    [({}, "me/ftcot-rationales", "No Hugging Face token"),
     ({"HF_TOKEN": "hf_x"}, "not a/valid id", "is not valid")],
)  # fmt: skip
def test_run_push_to_hub_checks_token_and_repo_ids_before_any_stage(tmp_path, monkeypatch, capsys, env, repo,
                                                                    expected):  # fmt: skip
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    code = main(["run", "--student", "gpt2", "--output_dir", str(out), "--push_to_hub", "--hub_dataset_id", repo])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not out.exists()  # nothing taught or trained before the publishing problem was said


def test_run_stops_at_a_spent_teacher_budget_and_the_same_command_continues(tmp_path, mirror, tiny_gpt2, capsys):
    from tests.fake_openai_server import FakeOpenAIServer

    out = tmp_path / "run"
    argv = ["run", "--teacher", "openai", "--teacher_model", "m", "--keep", "all", "--student", str(tiny_gpt2),
            "--limit_train", "4", "--limit_test", "2", "--num_train_epochs", "1", "--eval_max_new_tokens", "4",
            "--eval_untrained_limit", "1", "--max_length", "128", "--cpu_threads", "1", "--bf16", "false",
            "--data_dir", str(mirror), "--cache_dir", str(tmp_path / "c.sqlite"),
            "--output_dir", str(out)]  # fmt: skip
    with FakeOpenAIServer() as server:
        argv[5:5] = ["--base_url", server.base_url]
        assert main([*argv, "--max_requests", "3"]) == 3
        err = capsys.readouterr().err
        assert "ftcot: stopped:" in err and "The run stops before training" in err and "Traceback" not in err
        assert not (out / "rationales").exists() and not (out / "student").exists()
        sent = len(server.requests)
        assert main(argv) == 0  # the same command without the budget: only what was not sent goes out
        assert len(server.requests) - sent == 8 - 3  # 4 questions x 2 stages, 3 already answered and cached
    err = capsys.readouterr().err
    assert "[train/coin_flip] training in fp32 on CPU, 1 thread(s): --bf16 false." in err  # said once, with why
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["tasks"]["coin_flip"]["untrained_n"] == 1 and summary["tasks"]["coin_flip"]["n"] == 2
    assert "(first 1)" in (out / "report" / "results.md").read_text()  # the untrained row says its N


def test_the_docs_run_yaml_parses_into_its_stages(tmp_path):
    page = (REPO / "docs" / "run.md").read_text()
    block = page.split("```yaml\n# my_run.yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_run.yaml"
    path.write_text(block)
    config = parse_run_args(["--config", str(path)])
    assert (config.teacher, config.teacher_model, config.chat, config.degree, config.max_requests) == (
        "openai", "Qwen/Qwen3-8B", True, 4, 2000)  # fmt: skip
    assert (config.learning_rate, config.num_train_epochs, config.warmup_steps) == (3e-4, 20, 10)
    assert (config.eval_max_new_tokens, config.eval_every_epoch, config.student) == (256, True, "gpt2")
    assert config.output_dir == "runs/multiarith-gpt2"


def test_student_args_are_trls_model_config(capsys):
    from trl import ModelConfig

    from ftcot_hf.training.cli import peft_config_from

    assert issubclass(StudentArgs, ModelConfig)
    lora = peft_config_from(StudentArgs(use_peft=True, lora_target_modules=["all-linear"], lora_r=4))
    assert (lora.r, lora.target_modules, lora.task_type) == (4, "all-linear", "CAUSAL_LM")  # TRL's get_peft_config
    assert peft_config_from(StudentArgs(use_peft=True), encoder_decoder=True).task_type == "SEQ_2_SEQ_LM"
    assert peft_config_from(StudentArgs()) is None
    for argv, expected in (
        (["--model_name_or_path", "a", "--student", "b"], "disagree"),
        (["--student", "b", "--model_revision", "v1"], "--model_revision v1"),
        (["--student", "b", "--attn_implementation", "eager"], "--attn_implementation eager"),
    ):
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err


def test_a_pushed_card_says_how_many_questions_the_untrained_row_scored():
    from ftcot_hf.training.card import result_rows

    rows = dict(result_rows({"accuracy": 0.98, "n": 150, "untrained_accuracy": 0.0, "untrained_n": 30}))
    assert rows == {"accuracy": "98.00%", "test questions": "150", "untrained accuracy": "0.00%",
                    "test questions (untrained)": "30"}  # fmt: skip


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_shipped_recipe_is_a_run_recipe_too(recipe, tmp_path):
    """The recipes are written for `ftcot train --config` (they name their data and student); `ftcot run --recipe`
    takes their training values and leaves those to the run (docs/run.md shows `--recipe recipes/gpt2_paper.yaml`)."""
    path = RECIPES / recipe
    config = RunConfig(tasks=["coin_flip"], recipe=str(path), output_dir=str(tmp_path / "run"))
    values = config.train_values()
    written = yaml.safe_load(path.read_text())
    assert values["num_train_epochs"] == written["num_train_epochs"]
    assert "rationales" not in values and "correct_only" not in values
