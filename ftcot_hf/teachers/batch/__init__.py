"""Provider batch APIs as teachers: ``openai_batch`` (OpenAI's Batch API, vLLM's ``run_batch`` JSONL) and
``anthropic_batch`` (Anthropic's Message Batches). ``core.py`` is the state machine both share; each provider's
request/response shape is its own small file."""
