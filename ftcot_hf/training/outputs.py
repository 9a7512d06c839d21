"""What a training run leaves in its folder besides the weights: our model card (not TRL's auto-card), the summary
and the per-step losses, written atomically and without this machine's training-folder names."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ftcot_hf.students.formats import get_format
from ftcot_hf.students.loading import base_model_license
from ftcot_hf.training.card import render_model_card

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def public_name(output_dir: str | os.PathLike[str]) -> str:
    """The student's name as a reader sees it: the folder name, without the hidden ``.<name>.partial`` wrapper that
    ``ftcot run`` trains in before it moves the student into ``<name>``."""
    name = Path(output_dir).resolve().name
    if name.startswith(".") and name.endswith(PARTIAL_SUFFIX) and len(name) > len(PARTIAL_SUFFIX) + 1:
        return name[1 : -len(PARTIAL_SUFFIX)]
    return name


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a file so that a reader (or a crash) sees the old content or the new, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def loss_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per logged optimizer step: step, epoch, loss (what ``loss_log.json`` holds)."""
    return [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"]} for h in log_history if "loss" in h]


def _is_hub_dataset(name: str | None) -> bool:
    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name  # a bare word is more likely a missing local folder than a canonical Hub dataset


def training_recipe(config: Any, *, dataset_name: str | None, rows: int, processes: int,
                    result: Any) -> dict[str, Any]:  # fmt: skip
    """The settings a reader needs to reproduce the run (the card's "Training recipe" table)."""
    per_device = int(config.per_device_train_batch_size)
    accumulation = int(getattr(config, "gradient_accumulation_steps", 1) or 1)
    recipe: dict[str, Any] = {
        "trainer": "ftcot-hf (TRL SFTTrainer, prompt masked)" if not get_format(config.format).encoder_decoder
        else "ftcot-hf (transformers Seq2SeqTrainer)",
        "format": config.format,
        "rationale dataset": (dataset_name if _is_hub_dataset(dataset_name)
                              else Path(dataset_name).name if dataset_name else "records given in Python"),
        "training rows": rows,
        "epochs": config.num_train_epochs if (config.max_steps or -1) <= 0 else f"{config.max_steps} steps",
        "optimizer steps": result.global_step,
        "learning rate": config.learning_rate,
        "schedule": str(getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type)),
        "optimizer": str(getattr(config.optim, "value", config.optim)),
        "weight decay": config.weight_decay,
        "batch size": f"{per_device * processes * accumulation} ({per_device} per device x {processes} process(es)"
        + (f" x {accumulation} accumulation steps)" if accumulation > 1 else ")"),
        "max length (tokens)": config.max_length,
        "precision": "bf16" if config.bf16 else "fp16" if config.fp16 else "fp32",
        "seed": config.seed,
        "final training loss": round(float(result.training_loss), 4),
    }  # fmt: skip
    truncation = getattr(result, "truncation", None) or {}
    if truncation.get("truncated"):
        recipe["rows truncated at max length"] = f"{truncation['truncated']} of {truncation['rows']}"
    return recipe


def write_student_card(
    output_dir: str | os.PathLike[str],
    config: Any,
    *,
    result: Any,
    dataset_name: str | None,
    encoder_decoder: bool,
) -> Path:
    """Our model card (``ftcot_hf.training.card.render_model_card``) as the student folder's README.md."""
    base = str(config.student or "")
    last = getattr(result, "last_epoch", None)
    card = render_model_card(
        public_name(output_dir),
        base_model=base,
        task=config.task or "unknown-task",
        format=config.format,
        recipe=result.recipe,
        results=dict(last["metrics"]) if last and last.get("metrics") else None,
        dataset_repo=dataset_name if _is_hub_dataset(dataset_name) else None,
        license=base_model_license(base),
        encoder_decoder=encoder_decoder,
    )
    path = Path(output_dir) / "README.md"
    write_text_atomic(path, str(card))
    return path


def recorded_card_values(model_dir: str | os.PathLike[str], base_model: str) -> dict[str, Any]:
    """What a card pushed later can take from the student folder: the recipe its training recorded
    (``train_summary.json``) and the base model's licence (None where unknown)."""
    recipe = None
    try:
        summary = json.loads((Path(model_dir) / "train_summary.json").read_text(encoding="utf-8"))
        recipe = summary.get("recipe") if isinstance(summary, dict) else None
    except (OSError, ValueError):
        pass
    return {"recipe": recipe if isinstance(recipe, dict) else None, "license": base_model_license(base_model)}
