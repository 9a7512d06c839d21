"""Students: training on rationale datasets with TRL (decoder-only) or Seq2SeqTrainer (encoder-decoder).

Example::

    from ftcot_hf.training import FineTuneCoTConfig, train_student

    config = FineTuneCoTConfig(output_dir="out", task="coin_flip", eval_every_epoch=True)
    trainer, result = train_student(config, "gpt2", rationales["train"], rationales["test"])

The names are imported on first use: ``ftcot train`` checks how it was launched (``training.distributed``) before
torch, transformers and TRL are loaded, since a CPU multi-process launch starts its workers from there.
"""

from __future__ import annotations

from ftcot_hf.utils.lazy import lazy_names

_NAMES = {
    "DataArgs": "ftcot_hf.training.data",
    "DistillConfig": "ftcot_hf.training.distill_config",
    "check_vocabularies": "ftcot_hf.training.distill",
    "distill_student": "ftcot_hf.training.distill",
    "EpochEvalCallback": "ftcot_hf.training.callbacks",
    "ValidationEvalCallback": "ftcot_hf.training.callbacks",
    "FineTuneCoTConfig": "ftcot_hf.training.config",
    "FineTuneCoTTrainer": "ftcot_hf.training.trainer",
    "TrainResult": "ftcot_hf.training.trainer",
    "add_compact_lm_head": "ftcot_hf.training.trainer",
    "load_training_data": "ftcot_hf.training.data",
    "prepare_train_dataset": "ftcot_hf.training.data",
    "summarize_epochs": "ftcot_hf.training.callbacks",
    "train_student": "ftcot_hf.training.trainer",
}

__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
