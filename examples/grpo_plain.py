"""A plain TRL ``GRPOTrainer`` script after Fine-tune-CoT: RL from verifiable rewards with the task's answer parser.

The student (trained by ``ftcot train`` / ``ftcot run``) samples completions for the training questions, written in
its own format (``"{question} ###"`` for ``ft_cot``); ``ftcot_hf.rewards`` scores them with the parser that filtered
the teacher's rationales and that ``ftcot eval`` uses: ``accuracy_reward`` (1 when the parsed answer equals the
gold ``answer`` column) and ``format_reward`` (1 when the completion ends ``--> {answer} END``).

    ftcot teach --tasks coin_flip --output_dir outputs/rationales
    ftcot train --config recipes/cpu_smollm2.yaml
    python examples/grpo_plain.py --student outputs/students/smollm2-coin_flip --dataset outputs/rationales \
        --task coin_flip --max_steps 20

After ``ftcot run``, ``--student runs/x/student/coin_flip --dataset runs/x/rationales`` name the same two things.

One prompt per training question of the rationale dataset (its rationales are not used: GRPO learns from the
student's own samples). TRL logs ``rewards/accuracy_reward/mean`` and ``rewards/format_reward/mean`` per step; the
script prints the last step's means and saves the policy.
"""

import argparse

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from ftcot_hf.rewards import accuracy_reward, format_reward
from ftcot_hf.students.formats import get_format


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True, help="a causal LM trained by Fine-tune-CoT (folder or Hub id)")
    parser.add_argument("--dataset", default="outputs/rationales", help="rationale dataset folder or Hub id")
    parser.add_argument("--task", default="coin_flip", help="dataset config (one per task) and answer parser")
    parser.add_argument("--format", default="ft_cot", help="the student's format (its prompt, marker and END)")
    parser.add_argument("--mode", default="paper", help="answer parsing: paper, robust or math_verify")
    parser.add_argument("--output_dir", default="outputs/grpo-plain")
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=8, help="completions per device and step")
    parser.add_argument("--num_generations", type=int, default=8, help="completions per question (a GRPO group)")
    parser.add_argument("--max_completion_length", type=int, default=128, help="tokens per completion")
    parser.add_argument("--learning_rate", type=float, default=1e-6)
    args = parser.parse_args()

    fmt = get_format(args.format)
    rows = load_dataset(args.dataset, args.task)["train"]
    # a rationale dataset has one row per teacher sample: keep one prompt per question
    first: dict = {}
    for i, index in enumerate(rows["sample_index"]):
        first.setdefault(index, i)
    rows = rows.select(sorted(first.values()))
    prompts = rows.map(
        lambda r: {"prompt": fmt.prompt(r)}, remove_columns=[c for c in rows.column_names if c != "answer"]
    )

    tokenizer = AutoTokenizer.from_pretrained(args.student)
    model = AutoModelForCausalLM.from_pretrained(args.student)
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        logging_steps=1,
        bf16=False,  # GRPOConfig's default (bf16) fails on CPU
        activation_checkpointing=False,  # TRL's default recomputes the forward pass (~30% slower)
        save_strategy="no",
        report_to="none",
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[accuracy_reward(args.task, mode=args.mode, fmt=fmt), format_reward(fmt)],
        args=config,
        train_dataset=prompts,
    )
    trainer.train()
    trainer.save_model(args.output_dir)
    last = [log for log in trainer.state.log_history if "rewards/accuracy_reward/mean" in log][-1]
    print(
        f"step {trainer.state.global_step}: accuracy_reward {last['rewards/accuracy_reward/mean']:.3f}, "
        f"format_reward {last['rewards/format_reward/mean']:.3f}; saved to {args.output_dir}"
    )


if __name__ == "__main__":
    main()
