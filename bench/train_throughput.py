"""Training throughput of a GPT-2-small-sized student on real rationales: where SFTTrainer loses time on CPU.

Variants (tokens/s counts non-padding tokens, prompt included; each is timed from the end of warm-up step W to the
end of step W+T, so data loading, collation, the optimizer and logging are all inside the timing):

  a    raw PyTorch loop: the same batches as b/c (dataset order, 8 rows, padded to the batch's longest row),
       ``model(input_ids, attention_mask, labels).loss``, ``torch.optim.AdamW`` (foreach), no clipping.
  b    ``SFTTrainer`` with a default ``SFTConfig`` (``bf16=False``: its default bf16 fails on CPU).
  b1   ``SFTTrainer``, default ``SFTConfig`` but ``gradient_checkpointing=False``.
  c0   ``FineTuneCoTConfig`` with TRL's own loss (``completion_logits_only=False``) = plain SFTTrainer + our config.
  c    ``FineTuneCoTConfig`` + ``FineTuneCoTTrainer`` (``train_student``'s trainer), same batches as a (sequential).
  d    the reference's loop: every batch left-padded to the longest row of the whole dataset
       (reasoning-teacher's ``DataModule.tokenize`` pads the whole split at once), else as a.
  cg   c with the config's own sampler, ``group_by_length`` (batches of similar lengths: less padding).
  cp   c with ``packing=True`` (TRL's bfd, padding-free: ``max_length`` 1024, batch 1: ~7 rows per step).

Model: GPT-2 small (12 layers, 768 wide, 12 heads, 1024 positions, random init, seed 0) with the vocabulary of the
embedded SmolLM2 tokenizer (49,152; GPT-2's is 50,257). Data: the recorded text-davinci-002 rationales of the task
(replay teacher, offline), format ft_cot. a and c run alternately (``--rounds``) so that a neighbour's load affects
both alike; the ratio is computed per round. Peak RSS is sampled per variant (current RSS every 20 ms).

    FTCOT_DATA_MIRROR=../shared/data .venv/bin/python bench/train_throughput.py [--threads 2] [--task coin_flip]
    ... --variants a,c,b,b1,c0,d,cg,cp      # with the breakdown of b (checkpointing, then TRL's loss)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `ftcot_hf` importable from a checkout
    sys.path.insert(0, str(REPO_ROOT))

import psutil  # noqa: E402
import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback  # noqa: E402

DESCRIPTIONS = {
    "a": "raw PyTorch loop (batch-longest padding)",
    "b": "SFTTrainer, default SFTConfig (bf16=False)",
    "b1": "SFTTrainer, SFTConfig(gradient_checkpointing=False)",
    "c0": "SFTTrainer + FineTuneCoTConfig (TRL's loss)",
    "c": "FineTuneCoTTrainer + FineTuneCoTConfig (a's batches)",
    "d": "reference loop (pad to dataset-longest)",
    "cg": "c with the config's sampler (group_by_length)",
    "cp": "c + packing (bfd, 1024 x 1)",
}


TRL_OUTPUTS = ("log_probs", "entropy", "is_top1")  # what SFTTrainer asks its fused LM head for


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the maximum since ``reset``."""

    def __init__(self, every: float = 0.02):
        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss

    def stop(self) -> None:
        self._stop.set()


def load_tokenizer(path: str | None):
    from transformers import AutoTokenizer

    if path is None:
        from ftcot_hf.students.loading import embedded_student_path, ensure_converted

        path = str(ensure_converted(embedded_student_path()))
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_rows(task: str, limit: int | None):
    """The task's recorded rationales (correct only), formatted ft_cot, shuffled once (seed 0)."""
    from ftcot_hf.students.formats import format_dataset
    from ftcot_hf.teach import TeachConfig, teach

    with tempfile.TemporaryDirectory() as tmp:
        results, _ = teach(TeachConfig(tasks=[task], cache_dir=f"{tmp}/cache.sqlite"))
    rows = format_dataset(results[task]["train"], "ft_cot").shuffle(seed=0)
    return rows.select(range(min(limit, rows.num_rows))) if limit else rows


def tokenize_like_trl(rows, tok) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) as SFTTrainer builds them: prompt+completion+EOS, prompt masked by common prefix."""
    out = []
    for prompt, completion in zip(rows["prompt"], rows["completion"], strict=True):
        p = tok(prompt)["input_ids"]
        ids = tok(prompt + completion + tok.eos_token)["input_ids"]
        n = 0
        while n < min(len(p), len(ids)) and p[n] == ids[n]:
            n += 1
        out.append((ids, [-100] * n + ids[n:]))
    return out


def collate(items, pad_id: int, width: int | None = None, left: bool = False) -> dict[str, torch.Tensor]:
    width = width or max(len(i) for i, _ in items)
    ids = torch.full((len(items), width), pad_id)
    labels = torch.full((len(items), width), -100)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for b, (i, lab) in enumerate(items):
        sl = slice(width - len(i), width) if left else slice(0, len(i))
        ids[b, sl], labels[b, sl], mask[b, sl] = torch.tensor(i), torch.tensor(lab), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def release_memory() -> None:
    """Free what the previous variant left, and hand it back to the OS, so each variant's peak RSS is its own."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def fresh_model(config: GPT2Config, state: dict[str, torch.Tensor]) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel(config)
    model.load_state_dict(state)
    return model.train()


def raw_loop(model, examples, pad_id, batch_size, warmup, steps, dataset_width: int | None) -> dict[str, Any]:
    """a (dataset_width None: pad to the batch's longest, right) or d (pad every batch to dataset_width, left)."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    tokens, t0 = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        items = examples[step * batch_size : (step + 1) * batch_size]
        batch = collate(items, pad_id, dataset_width, left=dataset_width is not None)
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "last_loss": float(loss.detach())}


class StepClock(TrainerCallback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()


def trainer_run(variant, model, rows, tok, batch_size, warmup, steps, out_dir) -> dict[str, Any]:
    from trl import SFTConfig, SFTTrainer

    from ftcot_hf.training import FineTuneCoTConfig, FineTuneCoTTrainer

    common = {
        "output_dir": out_dir,
        "max_steps": warmup + steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": 3e-4,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "train_sampling_strategy": "sequential",
        "dataloader_pin_memory": False,
    }
    if variant in ("b", "b1"):
        args = SFTConfig(bf16=False, **({"gradient_checkpointing": False} if variant == "b1" else {}), **common)
        cls = SFTTrainer
    else:
        extra: dict[str, Any] = {}
        if variant == "c0":
            extra["completion_logits_only"] = False
        if variant == "cg":
            extra["train_sampling_strategy"] = "group_by_length"
        if variant == "cp":
            extra.update(packing=True, max_length=1024, per_device_train_batch_size=1)
        args = FineTuneCoTConfig(**{**common, **extra})
        cls = FineTuneCoTTrainer
    clock = StepClock(warmup)
    trainer = cls(model=model, args=args, train_dataset=rows, processing_class=tok, callbacks=[clock])
    counted: list[int] = []
    losses: list[torch.Tensor] = []
    inner = trainer.training_step

    def counting_step(model, inputs, num_items_in_batch=None):
        n = inputs["attention_mask"].sum() if "attention_mask" in inputs else inputs["position_ids"].size(1)
        counted.append(int(n))
        loss = inner(model, inputs, num_items_in_batch)
        losses.append(loss)
        return loss

    trainer.training_step = counting_step
    trainer.train()
    result = {"tokens": sum(counted[warmup:]), "seconds": clock.t1 - clock.t0, "last_loss": float(losses[-1])}
    del trainer
    return result


def breakdown(config: GPT2Config, state: dict, examples, pad_id: int, batch_size: int, repeats: int = 2) -> None:
    """Where a step's time goes, on the first batch (min of ``repeats``; forward + backward, no optimizer):
    the 12-layer body with and without activation checkpointing, then the LM head + loss alone on fixed hidden
    states: full logits (the model's own loss, as in a), labelled positions only (c), TRL's fused head as SFTTrainer
    runs it on CPU (every position; entropy and top-1 for its logs), and TRL's head with log-probs only."""
    import torch.nn.functional as F
    from trl.trainer.utils import add_fused_lm_head

    model = fresh_model(config, state)
    batch = collate(examples[:batch_size], pad_id)
    labels = batch["labels"][:, 1:]
    mask = labels != -100

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    def body() -> None:
        h = model.transformer(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        h.float().pow(2).mean().backward()

    with torch.no_grad():
        hidden = model.transformer(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = hidden.last_hidden_state[:, :-1].detach()

    def full_logits() -> None:
        h = hidden.clone().requires_grad_()
        logits = model.lm_head(h)
        F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100).backward()

    def compact() -> None:
        h = hidden.clone().requires_grad_()
        logits = model.lm_head(h[mask])
        (F.cross_entropy(logits, labels[mask], reduction="sum") / mask.sum()).backward()

    def trl_head(outputs: tuple[str, ...]):
        from trl.kernels import ChunkedLogProbFunction
        from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

        def run() -> None:
            h = hidden.clone().requires_grad_()
            per_token = ChunkedLogProbFunction.apply(
                h.reshape(-1, h.size(-1)), model.lm_head.weight, None, labels.clamp(min=0).reshape(-1), 1.0,
                _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, outputs,
            )  # fmt: skip
            log_probs = per_token[0].view(mask.shape).masked_fill(~mask, 0)
            (-log_probs.sum() / mask.sum()).backward()

        return run

    del add_fused_lm_head  # imported to fail early if TRL's internals moved
    rows = [("body (12 layers), fwd+bwd", timed(body))]
    model.gradient_checkpointing_enable()
    rows.append(("body with activation checkpointing (TRL default)", timed(body)))
    model.gradient_checkpointing_disable()
    n_all, n_lab = labels.numel(), int(mask.sum())
    rows += [
        (f"LM head + loss, full logits ({n_all} positions; a, d)", timed(full_logits)),
        (f"LM head + loss, labelled positions only ({n_lab}; c)", timed(compact)),
        (f"TRL fused head, CPU path ({n_all} positions, +entropy, top-1; b)", timed(trl_head(TRL_OUTPUTS))),
        ("TRL fused head, log-probs only", timed(trl_head(("log_probs",)))),
    ]  # fmt: skip
    shape, n_tok = tuple(batch["input_ids"].shape), int(batch["attention_mask"].sum())
    print(f"where the time goes (first batch {shape}, {n_tok} tokens, {n_lab} labels; fwd+bwd s, best of {repeats}):")
    for name, seconds in rows:
        print(f"  {name:64s} {seconds:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the free cores; 1 on a busy machine)")
    parser.add_argument("--task", default="multiarith")
    parser.add_argument("--variants", default="a,c,b,d,cg,cp", help="order of the first round (also: b1, c0)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of a and c (alternated)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layers", type=int, default=12, help="12 = GPT-2 small; fewer for a quick check")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-part timing of one step")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tok = load_tokenizer(args.tokenizer)
    need = (args.warmup + args.steps) * args.batch_size
    rows = load_rows(args.task, None)
    if rows.num_rows < need:
        raise SystemExit(f"{args.task} has {rows.num_rows} rationales; {need} needed for the steps asked")
    examples = tokenize_like_trl(rows, tok)
    lengths = [len(i) for i, _ in examples]
    dataset_width = max(lengths)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=args.layers, n_head=12,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    init = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in init.parameters())  # the LM head is tied to the embedding: counted once
    state = init.state_dict()
    del init
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()} (machine: {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}); GPT-2 {args.layers}x768, {n_params / 1e6:.1f}M params, vocab {len(tok)}; "
        f"{args.task}: {rows.num_rows} rationales, {statistics.mean(lengths):.0f} tokens/row mean, "
        f"{dataset_width} max; batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps"
    )
    if not args.no_breakdown:
        print()
        breakdown(config, state, examples, tok.pad_token_id, args.batch_size)
        print()
    order = [v.strip() for v in args.variants.split(",") if v.strip()]
    schedule = list(order)
    for _ in range(args.rounds - 1):
        schedule += [v for v in ("a", "c") if v in order]
    rss = PeakRSS()
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in schedule:
            release_memory()
            model = fresh_model(config, state)
            rss.reset()
            if variant in ("a", "d"):
                width = dataset_width if variant == "d" else None
                r = raw_loop(model, examples, tok.pad_token_id, args.batch_size, args.warmup, args.steps, width)
            else:
                r = trainer_run(variant, model, rows, tok, args.batch_size, args.warmup, args.steps, tmp)
            r["peak_rss_gb"] = rss.peak / 1e9
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            results.setdefault(variant, []).append(r)
            print(
                f"  {variant:3s} {DESCRIPTIONS[variant]:48s} {r['tokens_per_s']:8.1f} tok/s  "
                f"({r['tokens']} tokens in {r['seconds']:.1f} s; loss {r['last_loss']:.3f}; "
                f"peak RSS {r['peak_rss_gb']:.2f} GB)",
                flush=True,
            )
            del model
    rss.stop()

    def best(v: str) -> float:
        return max(r["tokens_per_s"] for r in results[v])

    print("\nsummary (tokens/s, best of rounds):")
    for v in order:
        peak = max(r["peak_rss_gb"] for r in results[v])
        print(f"  {v:3s} {DESCRIPTIONS[v]:48s} {best(v):8.1f}   peak RSS {peak:.2f} GB")
    if "a" in results and "c" in results:
        pairs = [c["tokens_per_s"] / a["tokens_per_s"] for a, c in zip(results["a"], results["c"], strict=False)]
        print(f"  c / a per round: {', '.join(f'{p:.2f}' for p in pairs)}  (goal >= 0.9)")
    for v in ("b", "b1", "c0", "cg", "cp"):
        if v in results and "a" in results:
            print(f"  {v} / a: {best(v) / best('a'):.2f}")
    if "d" in results:
        for v in ("c", "cg", "cp"):
            if v in results:
                print(f"  {v} / d: {best(v) / best('d'):.2f}  (goal >= 1.5 with packing or length grouping)")
    print(f"bench wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
