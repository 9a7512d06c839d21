"""The evaluation defaults, each defined once, here: ``ftcot eval`` (``EvalConfig``), ``evaluate_student``,
``generate_completions``, ``ftcot export-lm-eval``, ``ftcot distill`` and ``ftcot run`` (which reads them from
``EvalConfig``) agree on the first pair; ``ftcot train``'s per-epoch evaluation has its own pair (below). They live
with the students, not in ``evaluation/``, because ``generate_completions`` (``students/generation.py``, below the
teachers and evaluation alike) takes the first pair as its defaults.

160 new tokens: a Fine-tune-CoT completion is the teacher's rationale (128 tokens at most, the paper's and the
recorded teacher's budget) plus `` --> answer END``; the margin covers a student tokenizer that splits the rationale
into more tokens than the teacher's did. A student that never learnt to stop (the untrained row) would otherwise
generate 512 tokens for every question, the slowest part of a CPU run. Students taught by a one-stage reasoning
teacher (rationales up to 4096 tokens) need ``--max_new_tokens`` raised to their rationale length.

50 sequences per batch: stopped rows leave the batch (``generation.py``), so a wide batch costs little more than a
narrow one while it amortises each step's fixed cost; 50 divides the paper's 150-question test splits evenly.
"""

EVAL_MAX_NEW_TOKENS = 160
"""Tokens generated per completion at most (the model's position limit applies too)."""

EVAL_BATCH_SIZE = 50
"""Sequences decoded together."""

EVAL_SC_TEMPERATURE = 0.7
"""Sampling temperature of self-consistency (``--sc k``): the paper's diverse-reasoning temperature."""

EPOCH_EVAL_MAX_NEW_TOKENS = 512
"""``ftcot train --eval_every_epoch``'s budget (``FineTuneCoTConfig.eval_max_new_tokens``, ``EpochEvalCallback``): the
reference's (512 new tokens, of its 1024 in all), which that protocol has always used, so its per-epoch scores stay
comparable with earlier ones. ``ftcot run`` hands its training the eval section's values instead (160 / 50)."""

EPOCH_EVAL_BATCH_SIZE = 32
"""``ftcot train --eval_every_epoch``'s generation batch (``FineTuneCoTConfig.eval_batch_size``)."""
