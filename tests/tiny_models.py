"""Tiny local models for offline tests: a byte-level BPE tokenizer trained here and random-init configs."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Q: A coin is heads up. Whitney flips the coin. Is the coin still heads up?",
    "A: Let's think step by step. The coin was flipped once, so it is tails up. --> no END",
    "Therefore, the answer is yes. Therefore, the answer is no. 0 1 2 3 4 5 6 7 8 9 ###",
    "Take the last letters of each words in Whitney Erika Tj Benito and concatenate them.",
] * 50


def make_tokenizer(path: Path, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(path)
    return fast


def make_gpt2(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 64-wide GPT-2 with random weights, saved with its tokenizer at ``path``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    path.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(path)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=512, n_embd=64, n_layer=2, n_head=2,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path)
    return path
