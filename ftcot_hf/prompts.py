"""Zero-shot-CoT prompts (Kojima et al., 2022) as the paper's teacher uses them, in two stages.

Stage 1: ``"Q: {question}\\nA: Let's think step by step."`` -> rationale.
Stage 2: ``"{stage-1 prompt}{rationale}{answer trigger}"`` -> answer text. The paper's trigger is the
generic ``"\\nTherefore, the answer is"``; Kojima et al.'s logs (the recorded text-davinci-002 teacher) used
task-specific ones: each task carries its own (``Task.kojima_trigger``, ``Task.answer_trigger(style)``).
"""

from __future__ import annotations

COT_TRIGGER = "Let's think step by step."
GENERIC_ANSWER_TRIGGER = "\nTherefore, the answer is"

# TODO(restructure): the replay package still reads this; each task now carries its own (Task.kojima_trigger).
KOJIMA_ANSWER_TRIGGERS: dict[str, str] = {
    "single_eq": "\nTherefore, the answer (arabic numerals) is",
    "addsub": "\nTherefore, the answer (arabic numerals) is",
    "multiarith": "\nTherefore, the answer (arabic numerals) is",
    "gsm8k": "\nTherefore, the answer (arabic numerals) is",
    "svamp": "\nTherefore, the answer (arabic numerals) is",
    "aqua": "\nTherefore, among A through E, the answer is",
    "commonsense_qa": "\nTherefore, among A through E, the answer is",
    "date_understanding": "\nTherefore, among A through F, the answer is",
    "tracking_shuffled_objects": "\nTherefore, among A through C, the answer is",
    "coin_flip": "\nTherefore, the answer (Yes or No) is",
    "strategy_qa": "\nTherefore, the answer (Yes or No) is",
    "last_letter_concatenation": "\nTherefore, the answer is",
}


def stage1_prompt(question: str) -> str:
    return f"Q: {question}\nA: {COT_TRIGGER}"


def stage2_prompt(question: str, rationale: str, trigger: str = GENERIC_ANSWER_TRIGGER) -> str:
    return f"{stage1_prompt(question)}{rationale}{trigger}"
