"""Zero-shot-CoT prompts (Kojima et al., 2022) as the paper's teacher uses them, in two stages.

Stage 1: ``"Q: {question}\\nA: Let's think step by step."`` -> rationale.
Stage 2: ``"{stage-1 prompt}{rationale}{answer trigger}"`` -> answer text. The paper's trigger is the
generic ``"\\nTherefore, the answer is"``; Kojima et al.'s logs (the recorded text-davinci-002 teacher) used
task-specific ones: each task carries its own (``Task.kojima_trigger``, ``Task.answer_trigger(style)``).
"""

from __future__ import annotations

COT_TRIGGER = "Let's think step by step."
GENERIC_ANSWER_TRIGGER = "\nTherefore, the answer is"

RATIONALE_MAX_TOKENS = 128
"""Token budget of a stage-1 rationale: Kojima et al.'s ``max_length_cot``, which the paper's teacher used."""
ANSWER_MAX_TOKENS = 32
"""Token budget of a stage-2 answer: Kojima et al.'s ``max_length_direct``. Teaching, the Teacher row and the
zero-shot-CoT baseline all use it: the answer continues "Therefore, the answer is" with a few words."""


def stage1_prompt(question: str) -> str:
    return f"Q: {question}\nA: {COT_TRIGGER}"


def stage2_prompt(question: str, rationale: str, trigger: str = GENERIC_ANSWER_TRIGGER) -> str:
    return f"{stage1_prompt(question)}{rationale}{trigger}"


ANSWER_PHRASE = "Therefore, the answer is"
"""Where a one-stage reply states its answer (the generic trigger's words)."""

ONE_STAGE_INSTRUCTION = f'Think step by step. End your reply with one line of the form: "{ANSWER_PHRASE} <answer>."'


def one_stage_prompt(question: str) -> str:
    """One request that asks for the reasoning and the answer together: what a chat or reasoning model is sent (a
    chat model answers a new user turn instead of continuing a stage-1 text, so the two-stage protocol fails)."""
    return f"Q: {question}\n{ONE_STAGE_INSTRUCTION}"
