"""``ftcot train``: fine-tune a student on a rationale dataset.

    ftcot train --config recipes/cpu_smollm2.yaml
    ftcot train --student gpt2 --task multiarith --dataset outputs/rationales --output_dir outputs/gpt2-multiarith \
        --eval_every_epoch true
    ftcot train --config recipes/gpt2_paper.yaml --use_peft true --lora_r 16     # LoRA
    accelerate launch -m ftcot_hf.cli train --config recipes/gpt2_paper.yaml     # several GPUs

Flags come from three dataclasses (``TrlParser``, so every flag is also a YAML key of ``--config``):
``FineTuneCoTConfig`` (TRL's ``SFTConfig`` / ``TrainingArguments`` + the paper's defaults), ``StudentArgs`` (LoRA /
QLoRA, GGUF file) and ``DataArgs`` (dataset, filter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.training.data import DataArgs, load_training_data


@dataclass
class StudentArgs:
    """How the student is loaded and adapted (names as in TRL's ``ModelConfig``)."""

    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside the --student folder (transformers dequantizes it)."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules to adapt (default: peft's choice for the architecture). Not lm_head: TRL reads its "
            "weight directly, so an adapter there would never train (use lora_modules_to_save)."
        },
    )
    lora_modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained fully beside the adapters (e.g. lm_head)."}
    )
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised LoRA scaling."})
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})
    load_in_4bit: bool = field(
        default=False, metadata={"help": "QLoRA: load the base model in 4 bits (needs bitsandbytes and a CUDA GPU)."}
    )
    load_in_8bit: bool = field(default=False, metadata={"help": "Load the base model in 8 bits (bitsandbytes, CUDA)."})


def peft_config_from(args: StudentArgs, *, encoder_decoder: bool = False) -> Any:
    """A ``peft.LoraConfig`` from the flags (None without ``use_peft``)."""
    if not (args.use_peft or args.load_in_4bit or args.load_in_8bit):
        return None
    if args.lora_target_modules and "lm_head" in args.lora_target_modules and not encoder_decoder:
        raise FtcotError(
            "lm_head cannot be a LoRA target with SFTTrainer (it reads lm_head.weight for the loss): remove it from "
            "--lora_target_modules, or train it fully with --lora_modules_to_save lm_head."
        )
    from peft import LoraConfig

    return LoraConfig(
        task_type="SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM",
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
        modules_to_save=args.lora_modules_to_save,
        use_rslora=args.use_rslora,
        use_dora=args.use_dora,
        bias="none",
    )


def _load_quantized(name: str, args: StudentArgs) -> tuple[Any, Any]:
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
        raise FtcotError("--load_in_4bit/--load_in_8bit (QLoRA) need the bitsandbytes package and a CUDA GPU.")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=args.load_in_4bit,
        load_in_8bit=args.load_in_8bit,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(name, quantization_config=quant, device_map={"": 0})
    return prepare_model_for_kbit_training(model), AutoTokenizer.from_pretrained(name)


def resolve_training_task(config: Any, data_args: DataArgs) -> Any:
    """The edge of ``ftcot train``: the task of ``--task`` (registered, or recorded by the rationale folder of
    ``--dataset``) or the one the column flags define; None when neither names one."""
    from ftcot_hf.tasks import resolve_task
    from ftcot_hf.tasks.custom import recorded_tasks

    custom = data_args.custom_task()
    if custom is not None:
        config.task = custom.name
        return custom
    if config.task is None:
        return None
    recorded = recorded_tasks(data_args.dataset) if data_args.dataset else {}
    return recorded.get(config.task) or resolve_task(config.task)


def cli_main(argv: list[str]) -> int:
    """`ftcot train`: flags and `--config recipe.yaml` from FineTuneCoTConfig, StudentArgs and DataArgs."""
    import sys

    from ftcot_hf.training.distributed import accelerate_cpu_processes, relaunch_cpu_ddp

    processes = accelerate_cpu_processes()
    if processes is not None:  # before torch and TRL load: the workers load them themselves
        return relaunch_cpu_ddp(processes, sys.argv[1:])
    from ftcot_hf.training.config import FineTuneCoTConfig
    from ftcot_hf.training.trainer import load_student_for_training, train_student
    from ftcot_hf.utils.console import quiet_libraries
    from ftcot_hf.utils.parser import command_parser

    parser = command_parser((FineTuneCoTConfig, StudentArgs, DataArgs), argv, prog="ftcot train")
    config, student_args, data_args = parser.parse(argv)
    if not config.student:
        raise FtcotError("Which student? Pass --student (a Hub id, a folder, a .gguf file or an alias).")
    task = resolve_training_task(config, data_args)
    with quiet_libraries():
        train, test = load_training_data(data_args, task)
    if student_args.load_in_4bit or student_args.load_in_8bit:
        model, tokenizer = _load_quantized(config.student, student_args)
    else:
        with quiet_libraries():
            model, tokenizer = load_student_for_training(config.student, gguf_file=student_args.gguf_file)
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    trainer, result = train_student(
        config,
        model,
        train,
        test if config.eval_every_epoch else None,
        peft_config=peft_config_from(student_args, encoder_decoder=encoder_decoder),
        tokenizer=tokenizer,
        task=task,
        dataset_name=data_args.dataset,
    )
    if trainer.is_world_process_zero():  # one summary per run, not one per DDP process
        print(result.summary())
    return 0
