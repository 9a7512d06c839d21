"""``ftcot train``: fine-tune a student on a rationale dataset.

    ftcot train --config recipes/cpu_smollm2.yaml
    ftcot train --student gpt2 --task multiarith --rationales outputs/rationales --output_dir outputs/gpt2-multiarith \
        --eval_every_epoch true
    ftcot train --config recipes/gpt2_paper.yaml --use_peft true --lora_r 16     # LoRA
    accelerate launch -m ftcot_hf.cli train --config recipes/gpt2_paper.yaml     # several GPUs

Flags come from three dataclasses (``TrlParser``, so every flag is also a YAML key of ``--config``):
``FineTuneCoTConfig`` (TRL's ``SFTConfig`` / ``TrainingArguments`` + the paper's defaults), ``StudentArgs`` (TRL's
``ModelConfig``: LoRA / QLoRA, dtype; + the GGUF file) and ``DataArgs`` (rationales or your own dataset, filter).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trl import ModelConfig

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks.args import resolve_tasks
from ftcot_hf.training.data import DataArgs, load_training_data
from ftcot_hf.training.distributed import accelerate_cpu_processes, relaunch_cpu_ddp
from ftcot_hf.utils.console import quiet_libraries
from ftcot_hf.utils.parser import command_parser


@dataclass
class StudentArgs(ModelConfig):
    """How the student is loaded and adapted: TRL's ``ModelConfig`` (LoRA/QLoRA options with TRL's names and
    defaults, built by TRL's ``get_peft_config`` / ``get_quantization_config``) plus the GGUF file. ``--student``
    names the model; ``--model_name_or_path`` is accepted as its alias."""

    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside the --student folder (transformers dequantizes it)."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules to adapt (default: peft's choice for the architecture; 'all-linear': every linear "
            "layer). Not lm_head: TRL reads its weight directly, so an adapter there would never train (use "
            "lora_modules_to_save)."
        },
    )

    def check_supported(self) -> None:
        """ModelConfig options our loader does not take are refused rather than silently ignored."""
        if self.model_revision not in (None, "main"):
            raise FtcotError(f"--model_revision {self.model_revision}: pin the student by a local folder or the Hub "
                             "cache instead (ftcot's student loader takes no revision).")  # fmt: skip
        if self.attn_implementation is not None:
            raise FtcotError(f"--attn_implementation {self.attn_implementation} is not passed to the student; leave "
                             "it out (transformers picks sdpa where it can).")  # fmt: skip


def peft_config_from(args: StudentArgs, *, encoder_decoder: bool = False) -> Any:
    """A ``peft.LoraConfig`` from the flags through TRL's ``get_peft_config`` (None without ``use_peft``; QLoRA
    implies adapters)."""
    if not (args.use_peft or args.load_in_4bit or args.load_in_8bit):
        return None
    targets = args.lora_target_modules
    if targets and "lm_head" in ([targets] if isinstance(targets, str) else targets) and not encoder_decoder:
        raise FtcotError(
            "lm_head cannot be a LoRA target with SFTTrainer (it reads lm_head.weight for the loss): remove it from "
            "--lora_target_modules, or train it fully with --lora_modules_to_save lm_head."
        )
    from trl import get_peft_config  # trl.trainer.utils imports torch: not at import (see cli_main)

    task_type = "SEQ_2_SEQ_LM" if encoder_decoder else args.lora_task_type
    return get_peft_config(dataclasses.replace(args, use_peft=True, lora_task_type=task_type))


def _load_quantized(name: str, args: StudentArgs) -> tuple[Any, Any]:
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
        raise FtcotError("--load_in_4bit/--load_in_8bit (QLoRA) need the bitsandbytes package and a CUDA GPU.")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_kbit_device_map, get_quantization_config

    quant = get_quantization_config(dataclasses.replace(args, dtype=args.dtype or "bfloat16"))
    model = AutoModelForCausalLM.from_pretrained(name, quantization_config=quant, device_map=get_kbit_device_map())
    return prepare_model_for_kbit_training(model), AutoTokenizer.from_pretrained(name)


def resolve_training_task(config: Any, data_args: DataArgs) -> Any:
    """The task of ``ftcot train`` (:func:`~ftcot_hf.tasks.args.resolve_tasks`: the one the column flags define, or
    ``--task``: registered, or recorded by the rationale folder of ``--rationales``); None when neither names one."""
    names = [config.task] if config.task is not None else []
    tasks = resolve_tasks(names, data_args, rationales=data_args.rationales)
    if not tasks:
        return None
    config.task = tasks[0].name
    return tasks[0]


TRAIN_LEAD = ("student", "rationales", "task", "format", "output_dir")
"""What `ftcot train` acts on (the student, the rationale folder, the task, the format): its --help opens with them,
ahead of the hyper-parameters."""


def cli_main(argv: list[str]) -> int:
    """`ftcot train`: flags and `--config recipe.yaml` from FineTuneCoTConfig, StudentArgs and DataArgs."""
    import sys

    processes = accelerate_cpu_processes()
    if processes is not None:  # before torch and TRL load: the workers load them themselves
        return relaunch_cpu_ddp(processes, sys.argv[1:])
    from ftcot_hf.training.config import FineTuneCoTConfig  # heavy: imports torch; not before the DDP relaunch above
    from ftcot_hf.training.trainer import load_student_for_training, train_student

    parser = command_parser((FineTuneCoTConfig, StudentArgs, DataArgs), argv, prog="ftcot train", lead=TRAIN_LEAD)
    config, student_args, data_args = parser.parse(argv)
    if student_args.model_name_or_path and config.student not in (None, student_args.model_name_or_path):
        raise FtcotError(f"--model_name_or_path {student_args.model_name_or_path} and --student {config.student} "
                         "disagree: give one of them (they name the same thing).")  # fmt: skip
    config.student = config.student or student_args.model_name_or_path
    if not config.student:
        raise FtcotError("Which student? Pass --student (a Hub id, a folder, a .gguf file or an alias).")
    student_args.check_supported()
    task = resolve_training_task(config, data_args)
    with quiet_libraries():
        train, test = load_training_data(data_args, task)
    if student_args.load_in_4bit or student_args.load_in_8bit:
        model, tokenizer = _load_quantized(config.student, student_args)
    else:
        with quiet_libraries():
            model, tokenizer = load_student_for_training(
                config.student, gguf_file=student_args.gguf_file, dtype=student_args.dtype
            )
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    trainer, result = train_student(
        config,
        model,
        train,
        test if config.eval_every_epoch else None,
        peft_config=peft_config_from(student_args, encoder_decoder=encoder_decoder),
        tokenizer=tokenizer,
        task=task,
        dataset_name=data_args.rationales or data_args.dataset,
    )
    if trainer.is_world_process_zero():  # one summary per run, not one per DDP process
        print(result.summary())
    return 0
