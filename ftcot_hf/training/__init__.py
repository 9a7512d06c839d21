"""Students: training on rationale datasets with TRL (decoder-only) or Seq2SeqTrainer (encoder-decoder).

Example::

    from ftcot_hf.training import FineTuneCoTConfig, train_student

    config = FineTuneCoTConfig(output_dir="out", task="coin_flip", eval_every_epoch=True)
    trainer, result = train_student(config, "gpt2", rationales["train"], rationales["test"])
"""

from ftcot_hf.training.callbacks import EpochEvalCallback, summarize_epochs
from ftcot_hf.training.config import FineTuneCoTConfig
from ftcot_hf.training.data import DataArgs, load_training_data, prepare_train_dataset
from ftcot_hf.training.trainer import FineTuneCoTTrainer, TrainResult, add_compact_lm_head, train_student

__all__ = [
    "DataArgs",
    "EpochEvalCallback",
    "FineTuneCoTConfig",
    "FineTuneCoTTrainer",
    "TrainResult",
    "add_compact_lm_head",
    "load_training_data",
    "prepare_train_dataset",
    "summarize_epochs",
    "train_student",
]
