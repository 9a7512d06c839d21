"""Zero-shot-CoT prompts (Kojima et al., 2022) as the paper's teacher uses them, in two stages.

Stage 1: ``"Q: {question}\\nA: Let's think step by step."`` -> rationale.
Stage 2: ``"{stage-1 prompt}{rationale}{answer trigger}"`` -> answer text. The paper's trigger is the
generic ``"\\nTherefore, the answer is"``; Kojima et al.'s logs (the recorded text-davinci-002 teacher) used
task-specific ones: each task carries its own (``Task.kojima_trigger``, ``Task.answer_trigger(style)``).
"""

from __future__ import annotations

COT_TRIGGER = "Let's think step by step."
GENERIC_ANSWER_TRIGGER = "\nTherefore, the answer is"

def stage1_prompt(question: str) -> str:
    return f"Q: {question}\nA: {COT_TRIGGER}"


def stage2_prompt(question: str, rationale: str, trigger: str = GENERIC_ANSWER_TRIGGER) -> str:
    return f"{stage1_prompt(question)}{rationale}{trigger}"
