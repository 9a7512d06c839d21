"""On-policy distillation after Fine-tune-CoT (`ftcot distill`, `ftcot run --distill on_policy`, the study): the
trainer chosen from the vocabularies, a same-vocabulary teacher (TRL's DistillationTrainer) and one of another
vocabulary (GOLD with ULD), the command as a user types it, resume, the pipeline stage, bad input, the smaller
student helper and the study's smallest form. Tiny random models, tokenizers trained offline (tests/tiny_models)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch

from ftcot_hf.cli import main
from ftcot_hf.pipeline import RunConfig, run
from tests.docs_commands import doc_command
from tests.doubles import exits_2_in_one_line
from tests.tiny_models import make_gpt2, make_tokenizer

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gpt2(path: Path, tokenizer_vocab: int, seed: int, layers: int = 2) -> Path:
    """A tiny GPT-2 with its own byte-level BPE tokenizer of ``tokenizer_vocab`` tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(path, vocab_size=tokenizer_vocab)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=64, n_layer=layers, n_head=2,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, mirror):
    """A rationale dataset (the recorded teacher, 24 coin_flip questions), a tiny student fine-tuned on it as
    `ftcot train` saves one, a teacher of the same vocabulary (3 layers) and one of another (a 300-token BPE)."""
    from ftcot_hf.teach import TeachConfig, save_rationales, teach
    from ftcot_hf.training import FineTuneCoTConfig, train_student
    from ftcot_hf.training.data import DataArgs, load_training_data

    root = tmp_path_factory.mktemp("distill")
    cfg = TeachConfig(tasks=["coin_flip"], limit=24, data_dir=str(mirror), cache_dir=str(root / "c.sqlite"),
                      output_dir=str(root / "rationales"))  # fmt: skip
    results, reports = teach(cfg)
    rationales = save_rationales(cfg, results, reports)
    base = make_gpt2(root / "base")
    train, _ = load_training_data(DataArgs(rationales=str(rationales)), "coin_flip")
    sft = FineTuneCoTConfig(output_dir=str(root / "sft"), task="coin_flip", num_train_epochs=1, learning_rate=1e-3,
                            disable_tqdm=True, seed=0)  # fmt: skip
    train_student(sft, str(base), train)
    return {"root": root, "rationales": rationales, "base": base, "sft": root / "sft",
            "same": _gpt2(root / "teacher-same", 400, seed=1, layers=3),
            "other": _gpt2(root / "teacher-other", 300, seed=2)}  # fmt: skip


SMALL = ["--max_completion_length", "8", "--per_device_train_batch_size", "4", "--eval_limit", "3",
         "--eval_max_new_tokens", "6", "--eval_batch_size", "4", "--cpu_threads", "1",
         "--disable_tqdm", "true"]  # fmt: skip


DOC_STUDENT, DOC_TEACHER = "outputs/students/smollm2-coin_flip", "runs/teacher/student/coin_flip"


def as_typed(text: str, swaps: dict[str, str]) -> list[str]:
    """docs/distill.md's command ``text`` as a user types it, its paths swapped for the test's (after ``ftcot``)."""
    command = doc_command(text)
    assert command.page == "docs/distill.md"
    return [swaps.get(a, a) for a in command.argv[1:]]


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_the_vocabulary_check_picks_the_trainer_and_says_why(models):
    from ftcot_hf.training.distill import DISTILLATION, GOLD, check_vocabularies

    student, same, other = (_tokenizer(models[k]) for k in ("sft", "same", "other"))
    n = len(student)
    check = check_vocabularies(student, same, n, n, student="S", teacher="T")
    assert (check.trainer, check.uld) == (DISTILLATION, False)
    assert check.line == (f"teacher T and student S share one vocabulary ({n} tokens, same ids): TRL's "
                          "DistillationTrainer, fully on-policy (the student samples, the teacher scores every "
                          "token).")  # fmt: skip
    mixed = check_vocabularies(student, same, n, n, lmbda=0.5)
    assert (mixed.trainer, mixed.uld) == (GOLD, False) and "--lmbda 0.5" in mixed.line and "GKD" in mixed.line
    padded = check_vocabularies(student, same, n, n + 64)
    assert (padded.trainer, padded.uld) == (GOLD, False) and "embedding rows" in padded.line
    crossed = check_vocabularies(student, other, n, len(other))
    assert (crossed.trainer, crossed.uld) == (GOLD, True)
    assert f"different vocabularies (300 and {n} tokens" in crossed.line and "ULD" in crossed.line


def test_help_opens_with_what_distill_acts_on_and_its_knobs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["distill", "--help"])
    assert exit_.value.code == 0
    screen = capsys.readouterr().out.splitlines()
    options = [line.split()[0].rstrip(",") for line in screen if line.startswith("  --")]
    assert options[2:9] == ["--student", "--teacher_model", "--teacher_url", "--rationales", "--task", "--format",
                            "--output_dir"]  # fmt: skip
    assert {"--beta", "--temperature", "--lmbda", "--max_completion_length"} <= set(options[:30])


def test_gold_gets_the_shared_options_lmbda_and_gold_kwargs(tmp_path):
    from ftcot_hf.errors import FtcotError
    from ftcot_hf.training.distill import gold_config
    from ftcot_hf.training.distill_config import DistillConfig

    config = DistillConfig(output_dir=str(tmp_path), beta=0.3, temperature=0.7, lmbda=0.25, max_completion_length=9,
                           learning_rate=2e-5, seed=7, gold_kwargs='{"seq_kd": true}')  # fmt: skip
    assert config.bf16 is False and config.gradient_checkpointing is False  # CPU: fp32, no recomputation
    gold = gold_config(config, uld=True, teacher_tokenizer="teacher/", max_length=50)
    assert (gold.beta, gold.temperature, gold.lmbda, gold.max_completion_length, gold.learning_rate, gold.seed) == (
        0.3, 0.7, 0.25, 9, 2e-5, 7)  # fmt: skip
    assert gold.use_uld_loss and gold.teacher_tokenizer_name_or_path == "teacher/" and gold.seq_kd
    assert gold.max_length == 50 and gold.top_p == config.top_p == 1.0  # ours, not GOLD's default 0.95
    config.gold_kwargs = {"not_an_option": 1}
    with pytest.raises(FtcotError, match="not_an_option is no GOLDConfig option"):
        gold_config(config, uld=False, teacher_tokenizer="t", max_length=50)


def test_ftcot_distill_with_a_teacher_of_the_same_vocabulary_as_typed_and_resumed(models, mirror, capsys):
    sft, out = models["sft"], Path(f"{models['sft']}-distilled")  # the default --output_dir: beside the student
    swaps = {DOC_STUDENT: str(sft), DOC_TEACHER: str(models["same"])}
    small = ["--data_dir", str(mirror), "--max_train_samples", "8", *SMALL]
    argv = as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_model {DOC_TEACHER}", swaps)
    assert main([*argv, *small]) == 0
    printed = capsys.readouterr().out
    assert printed.count("share one vocabulary") == 1 and "TRL's DistillationTrainer" in printed
    assert "test accuracy on 3 questions: SFT student " in printed and "-> distilled " in printed
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["trainer"] == "DistillationTrainer" and summary["global_step"] == 2  # 8 questions, batch 4
    assert summary["task"] == "coin_flip" and summary["format"] == "ft_cot"  # read from the student's summary
    assert summary["student"] == str(models["base"]) and summary["distilled_from"] == "sft"
    epochs = json.loads((out / "epoch_metrics.json").read_text())
    assert [e["epoch"] for e in epochs] == [0, 1] and all(e["metrics"]["n"] == 3 for e in epochs)
    assert (out / "epoch_completions" / "epoch_0.jsonl").is_file()  # the SFT student, scored before distilling
    card = (out / "README.md").read_text()
    assert "DistillationTrainer" in card and "teacher-same" in card
    from ftcot_hf.students.loading import load_student

    before, _ = load_student(str(sft))
    after, _ = load_student(str(out))
    saved = json.loads((out / "tokenizer_config.json").read_text())  # TRL's left padding is not saved with it
    assert saved.get("padding_side") == json.loads((sft / "tokenizer_config.json").read_text()).get("padding_side")
    assert not torch.equal(before.transformer.h[0].mlp.c_fc.weight, after.transformer.h[0].mlp.c_fc.weight)

    resume = as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_model {DOC_TEACHER} --num_train_epochs 2 "
                      "--resume_from_checkpoint last", swaps)  # fmt: skip
    assert main([*resume, *small]) == 0
    resumed = json.loads((out / "train_summary.json").read_text())
    assert resumed["global_step"] == 4
    again = json.loads((out / "epoch_metrics.json").read_text())
    assert [e["epoch"] for e in again] == [0, 1, 2] and again[:2] == epochs  # epochs 0 and 1 kept, not re-scored


def test_ftcot_distill_with_a_teacher_of_another_vocabulary_runs_gold(models, mirror, tmp_path, capsys):
    out = tmp_path / "gold"
    argv = as_typed(f"ftcot distill --student {DOC_STUDENT} --teacher_model Qwen/Qwen2.5-0.5B-Instruct --rationales "
                    "outputs/rationales --lmbda 0.5", {DOC_STUDENT: str(models["sft"]), "Qwen/Qwen2.5-0.5B-Instruct":
                    str(models["other"]), "outputs/rationales": str(models["rationales"])})  # fmt: skip
    assert main([*argv, "--logging_steps", "1", "--output_dir", str(out), "--data_dir", str(mirror), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "have different vocabularies (300 and 394 tokens" in printed and "GOLD (trl.experimental.gold)" in printed
    assert "policy_loss" in printed  # GOLD's own logs: on- and off-policy batches
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["trainer"] == "GOLDTrainer" and summary["global_step"] >= 1
    assert summary["recipe"]["on-policy share (lmbda)"] == 0.5 and "ULD" in summary["recipe"]["trainer"]
    assert [e["epoch"] for e in json.loads((out / "epoch_metrics.json").read_text())] == [0, 1]


BAD = [
    ("no-student", "--teacher_model {same}", "Which student? Pass --student"),
    ("no-teacher", "--student {sft}", "Which teacher? Pass --teacher_model"),
    ("missing-student", "--student {root}/nope --teacher_model {same}", "--student {root}/nope: Student path"),
    ("missing-teacher", "--student {sft} --teacher_model {root}/nope", "--teacher_model {root}/nope: Model path"),
    ("lmbda", "--student {sft} --teacher_model {same} --lmbda 1.5", "lmbda must be in [0, 1]"),
    ("beta", "--student {sft} --teacher_model {same} --beta 2", "beta must be in [0.0, 1.0]"),
    ("own-folder", "--student {sft} --teacher_model {same} --output_dir {sft}", "the student's own folder"),
    ("no-rationales", "--student {sft} --teacher_model {same} --lmbda 0.5", "give --rationales"),
    ("no-task", "--student {base} --teacher_model {same}", "Which task?"),
    ("format", "--student {sft} --teacher_model {same} --format ft_cott", "Did you mean 'ft_cot'"),
    ("gold-kwargs", "--student {sft} --teacher_model {other} --max_train_samples 4 --gold_kwargs {kwargs}",
     "nope is no GOLDConfig option"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_and_exit_2(models, mirror, tmp_path, capsys, flags, needle):
    values = {k: str(v) for k, v in models.items()} | {"kwargs": '{"nope":1}'}
    argv = ["distill", "--output_dir", str(tmp_path / "out"), *[a.format(**values) for a in flags.split()],
            "--data_dir", str(mirror), *SMALL]  # fmt: skip
    exits_2_in_one_line(argv, capsys, needle.format(**values))


def _run_config(tmp: Path, models: dict, mirror: Path, **overrides) -> RunConfig:
    values = dict(student=str(models["base"]), limit_train=12, limit_test=3, eval_max_new_tokens=6, eval_batch_size=4,
                  output_dir=str(tmp / "run"), cache_dir=str(tmp / "teacher.sqlite"), data_dir=str(mirror),
                  cpu_threads=1, eval_untrained=False, distill="on_policy", distill_teacher=str(models["same"]),
                  distill_max_completion_length=8, distill_per_device_train_batch_size=4)  # fmt: skip
    return RunConfig(**{**values, **overrides})


def test_ftcot_run_with_the_distill_stage_as_typed_reused_and_resumed(models, mirror, tmp_path, capsys, monkeypatch):
    from trl import DistillationTrainer

    import ftcot_hf.training.distill as distill_module

    config = _run_config(tmp_path, models, mirror)
    argv = as_typed(f"ftcot run --distill on_policy --distill_teacher {DOC_TEACHER}",
                    {DOC_TEACHER: str(models["same"])})  # fmt: skip
    small = ["--student", config.student, "--limit_train", "12", "--limit_test", "3", "--eval_max_new_tokens", "6",
             "--eval_batch_size", "4", "--output_dir", config.output_dir, "--cache_dir", config.cache_dir,
             "--data_dir", str(mirror), "--cpu_threads", "1", "--eval_untrained", "false",
             "--distill_max_completion_length", "8", "--distill_per_device_train_batch_size", "4"]  # fmt: skip
    assert main([*argv, *small]) == 0
    captured = capsys.readouterr()
    assert "[distill/coin_flip] teacher " in captured.err and "DistillationTrainer" in captured.err
    assert "coin_flip: SFT student " in captured.out and "-> distilled from " in captured.out
    out = Path(config.output_dir)
    for rel in ("distilled/coin_flip/model.safetensors", "distilled/coin_flip/train_summary.json",
                "eval_distilled/coin_flip/results.json", "eval/coin_flip/results.json"):  # fmt: skip
        assert (out / rel).is_file(), rel
    assert not (out / "distilled" / ".coin_flip.partial").exists()
    report = (out / "report" / "results.md").read_text()
    assert "| task | SFT student | distilled | change (points) | trainer |" in report
    assert "| distill/coin_flip | ran |" in report and "| eval_distilled/coin_flip | ran |" in report
    summary = json.loads((out / "report" / "summary.json").read_text())["tasks"]["coin_flip"]
    assert summary["distill_trainer"] == "DistillationTrainer" and summary["distilled_n"] == 3

    again = run(config)
    assert {s["status"] for s in again.stages.values()} == {"reused"}
    runtime = json.loads((out / "distilled/coin_flip/train_summary.json").read_text())["train_runtime"]
    assert again.stages["distill/coin_flip"]["original_seconds"] >= round(runtime, 1)  # the stage, not its last copy
    changed = run(_run_config(tmp_path, models, mirror, distill_beta=0.5))  # only the distillation's inputs changed
    expected = {"teach": "reused", "train/coin_flip": "reused", "distill/coin_flip": "ran", "eval/coin_flip": "reused",
                "eval_distilled/coin_flip": "ran"}  # fmt: skip
    assert {n: s["status"] for n, s in changed.stages.items()} == expected
    weights = models["same"] / "model.safetensors"  # the teacher saved again in place (retrained): not reused
    weights.write_bytes(weights.read_bytes())
    redone = run(_run_config(tmp_path, models, mirror, distill_beta=0.5))
    assert {n: s["status"] for n, s in redone.stages.items()} == expected

    # killed after the first of two distillation epochs: the re-run resumes from that epoch's checkpoint
    two = _run_config(tmp_path, models, mirror, distill_num_train_epochs=2)
    real_save, resumed_from = DistillationTrainer._save_checkpoint, []

    def save_then_die(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(DistillationTrainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(two)
    assert list((out / "distilled" / ".coin_flip.partial").glob("checkpoint-*"))
    monkeypatch.setattr(DistillationTrainer, "_save_checkpoint", real_save)
    real_point = distill_module.resume_point
    monkeypatch.setattr(distill_module, "resume_point", lambda c, r: resumed_from.append(real_point(c, r)) or
                        resumed_from[-1])  # fmt: skip
    finished = run(two)
    assert finished.stages["distill/coin_flip"]["status"] == "ran"
    assert resumed_from and Path(resumed_from[0]).name.startswith("checkpoint-")
    steps = json.loads((out / "distilled" / "coin_flip" / "train_summary.json").read_text())["global_step"]
    assert steps == 2 * int(Path(resumed_from[0]).name.split("-")[1])


def test_the_runs_distill_section_reads_back_from_yaml_and_reaches_the_stage(tmp_path):
    import yaml

    from ftcot_hf.pipeline.run import parse_run_args

    path = tmp_path / "run.yaml"
    path.write_text("distill:\n  method: on_policy\n  teacher: t/\n  beta: 0.5\n  lmbda: 0.25\n")
    config = parse_run_args(["--config", str(path), "--distill_temperature", "0.7"])
    assert (config.distill, config.distill_teacher, config.distill_beta, config.distill_lmbda) == (
        "on_policy", "t/", 0.5, 0.25)  # fmt: skip
    section = config.to_yaml_dict()["distill"]
    assert section["method"] == "on_policy" and section["temperature"] == 0.7
    path.write_text(yaml.safe_dump(config.to_yaml_dict()))
    assert parse_run_args(["--config", str(path)]).section("distill") == config.section("distill")
    stage = config.distill_config("coin_flip", tmp_path / "student", tmp_path / "out", bf16=False)
    assert (stage.beta, stage.lmbda, stage.temperature, stage.teacher_model) == (0.5, 0.25, 0.7, "t/")
    assert not stage.eval_start and stage.resume_from_checkpoint == "last" and stage.format == "ft_cot"


def test_run_refuses_a_distillation_without_its_teacher(tmp_path, mirror, capsys):
    rc = main(["run", "--output_dir", str(tmp_path / "run"), "--data_dir", str(mirror), "--distill", "on_policy"])
    err = capsys.readouterr().err
    assert rc == 2 and "--distill on_policy needs its teacher: --distill_teacher M" in err
    rc = main(["run", "--output_dir", str(tmp_path / "run"), "--data_dir", str(mirror), "--distill", "on_policy",
               "--distill_teacher", str(tmp_path / "nope")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and f"--distill_teacher {tmp_path / 'nope'}: Model path" in err
    assert not (tmp_path / "run" / "rationales").exists()  # refused before the teach stage


def test_keep_layers_makes_a_smaller_student_of_the_same_vocabulary(models, tmp_path):
    from ftcot_hf.errors import FtcotError
    from ftcot_hf.students.loading import load_student
    from ftcot_hf.students.shrink import keep_layers

    base, _ = load_student(str(models["same"]))  # 3 layers
    half = keep_layers(str(models["same"]), tmp_path / "half")  # layers 0 and 2
    small, tokenizer = load_student(str(half))
    assert small.config.n_layer == 2 and len(tokenizer) == len(_tokenizer(models["same"]))
    assert torch.equal(small.transformer.h[1].attn.c_attn.weight, base.transformer.h[2].attn.c_attn.weight)
    assert torch.equal(small.transformer.wte.weight, base.transformer.wte.weight)
    last = keep_layers(str(models["same"]), tmp_path / "last", layers=[2])
    only, _ = load_student(str(last))
    assert torch.equal(only.transformer.h[0].mlp.c_fc.weight, base.transformer.h[2].mlp.c_fc.weight)
    with pytest.raises(FtcotError, match="not among the 3 layers"):
        keep_layers(str(models["same"]), tmp_path / "bad", layers=[3])


def test_the_distill_study_runs_in_its_smallest_form_and_resumes(models, mirror, tmp_path, capsys):
    study = runpy.run_path(str(REPO / "experiments" / "distill_study.py"))
    typed = as_typed("python experiments/distill_study.py --name distill_quick --seeds 1 2 --limit_train 12 "
                     "--limit_test 3 --teacher_epochs 1 --sft_epochs 1", {})[1:]  # fmt: skip
    argv = [*typed, "--task", "coin_flip", "--base", str(models["base"]), "--eval_max_new_tokens", "4",
            "--max_completion_length", "6", "--eval_batch_size", "4", "--root", str(tmp_path / "runs"),
            "--results_dir", str(tmp_path / "results"), "--data_dir", str(mirror), "--cpu_threads", "1"]  # fmt: skip
    assert study["main"](argv) == 0
    saved = json.loads((tmp_path / "results" / "distill_quick.json").read_text())
    assert set(saved["seeds"]) == {"1", "2"} and saved["teacher"]["n"] == 3
    for cell in saved["seeds"].values():
        assert cell["sft+distill"]["trainer"] == "DistillationTrainer" and cell["sft"]["epochs"] >= 2
        assert cell["sft+distill"]["train_seconds"] > 0 and cell["sft"]["train_seconds"] > 0
    half = tmp_path / "runs" / "distill_quick" / "student-half"
    assert json.loads((half / "config.json").read_text())["n_layer"] == 1  # the base's 2 layers, every other one
    table = (tmp_path / "results" / "distill_quick.md").read_text()
    assert "| mean ± sd (2 seeds) |" in table and "| 1 | " in table and "| 2 | " in table
    capsys.readouterr()

    assert study["main"](argv) == 0  # every cell is in the results file: nothing runs again
    assert "seed 1:" not in capsys.readouterr().out
    assert json.loads((tmp_path / "results" / "distill_quick.json").read_text())["seeds"] == saved["seeds"]


def test_the_distill_study_student_keeps_k_of_every_n_layers():
    study = runpy.run_path(str(REPO / "experiments" / "distill_study.py"))
    assert study["student_layers"]("1/2", 30) == list(range(0, 30, 2))
    three = study["student_layers"]("3/4", 30)
    assert len(three) == 23 and not {3, 7, 11, 15, 19, 23, 27} & set(three) and three[:4] == [0, 1, 2, 4]
    for bad in ("3", "0/4", "5/4", "a/b"):
        with pytest.raises(SystemExit, match="--student_keep"):
            study["student_layers"](bad, 30)
