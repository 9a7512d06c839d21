"""The fake vLLM's reasoning parsers: ``deepseek_r1`` as vLLM's (the trace before ``</think>``; ``<think>``
optional)."""

from __future__ import annotations

from typing import Any


class DeepSeekR1Parser:
    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def extract_reasoning(self, model_output: str, request: Any) -> tuple[str | None, str | None]:
        before, opened, after = model_output.partition("<think>")
        text = after if opened else before
        if "</think>" not in text:
            return text, None
        trace, _, content = text.partition("</think>")
        return trace, content or None


class ReasoningParserManager:
    parsers = {"deepseek_r1": DeepSeekR1Parser}

    @classmethod
    def get_reasoning_parser(cls, name: str) -> type:
        if name not in cls.parsers:
            raise KeyError(f"Reasoning parser '{name}' not found.")
        return cls.parsers[name]

    @classmethod
    def list_registered(cls) -> list[str]:
        return sorted(cls.parsers)
