"""Encoder-decoder students (T5, Flan-T5): ``Seq2SeqTrainer`` behind the same ``FineTuneCoTConfig``.

TRL's ``SFTTrainer`` is decoder-only. Here the prompt is the encoder input and the completion the decoder target, so
"the prompt is masked" holds by construction: the labels are the target tokens (EOS last, padding -100), as the
reference did (input and label each truncated at 512 tokens).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Seq2SeqTrainer

    from ftcot_hf.training.config import FineTuneCoTConfig

logger = logging.getLogger(__name__)


def tokenize_seq2seq(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, *, max_source_length: int, max_target_length: int
) -> Dataset:
    """prompt/completion rows -> input_ids, attention_mask, labels (EOS-terminated target)."""
    eos = tokenizer.eos_token_id

    def encode(batch: dict[str, list]) -> dict[str, list]:
        source = tokenizer(batch["prompt"], max_length=max_source_length, truncation=True)
        target = tokenizer(text_target=batch["completion"], max_length=max_target_length, truncation=True)
        labels = []
        for ids in target["input_ids"]:
            # T5 tokenizers append </s> themselves; others (e.g. a BPE tokenizer) do not: the student must learn EOS.
            if eos is not None and (not ids or ids[-1] != eos):
                ids = ids[: max_target_length - 1] + [eos]
            labels.append(ids)
        return {"input_ids": source["input_ids"], "attention_mask": source["attention_mask"], "labels": labels}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing (seq2seq)")


def seq2seq_arguments(config: FineTuneCoTConfig) -> Any:
    """The ``Seq2SeqTrainingArguments`` equivalent of ``config`` (the TrainingArguments fields it shares)."""
    from transformers import Seq2SeqTrainingArguments

    names = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}
    values = {k: v for k, v in config.to_dict().items() if k in names}
    values["hub_token"] = config.hub_token  # to_dict hides it
    values["remove_unused_columns"] = False  # the tokenized dataset holds only model inputs
    return Seq2SeqTrainingArguments(**values)


def build_seq2seq_trainer(
    config: FineTuneCoTConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    *,
    peft_config: Any = None,
    callbacks: list | None = None,
) -> Seq2SeqTrainer:
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    if config.packing:
        raise FtcotError("Packing is for decoder-only students; encoder-decoder students train on padded batches.")
    if peft_config is not None:
        from peft import get_peft_model

        if getattr(peft_config, "task_type", None) in (None, "CAUSAL_LM"):
            peft_config.task_type = "SEQ_2_SEQ_LM"
        model = get_peft_model(model, peft_config)
    tokenized = tokenize_seq2seq(
        train, tokenizer, max_source_length=config.max_source_length, max_target_length=config.max_target_length
    )
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    return Seq2SeqTrainer(
        model=model,
        args=seq2seq_arguments(config),
        train_dataset=tokenized,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
