"""What every card we write shares: its YAML header read back, and checked against the Hub's own round trip before
anything is saved or pushed (the rationale dataset card: ``teach/card.py``; the student's: ``training/card.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ftcot_hf.errors import FtcotError

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard, ModelCard


def card_metadata(card: DatasetCard | ModelCard | str) -> dict[str, Any]:
    """The YAML header of a card, as a dict."""
    text = str(card)
    if not text.startswith("---"):
        raise FtcotError("The card has no YAML metadata header.")
    return yaml.safe_load(text.split("---", 2)[1]) or {}


def validate_card(card: DatasetCard | ModelCard | str, kind: str) -> dict[str, Any]:
    """Check locally that a card's YAML survives the Hub's card-data round trip; returns the metadata.

    Raises:
        FtcotError: the metadata changes when parsed by ``DatasetCardData``/``ModelCardData`` (a field the Hub
            would read differently), or a model-index entry lacks what the Hub needs.
    """
    from huggingface_hub import DatasetCardData, ModelCardData

    header = card_metadata(card)
    data_cls = DatasetCardData if kind == "dataset" else ModelCardData
    try:
        again = data_cls(**header).to_dict()
    except (ValueError, KeyError, TypeError) as e:
        raise FtcotError(f"Invalid {kind} card metadata: {e}") from e
    if again != header:
        changed = sorted(k for k in set(header) | set(again) if header.get(k) != again.get(k))
        raise FtcotError(f"The {kind} card's metadata does not round-trip through {data_cls.__name__}: {changed}")
    if kind == "model":
        for entry in header.get("model-index", []):
            for result in entry.get("results", []):
                if not (result.get("task", {}).get("type") and result.get("dataset", {}).get("type")):
                    raise FtcotError(f"model-index result without task/dataset type: {result}")
    return header


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is a Hub repo id rather than a local path (a folder that exists, or starts like one)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True
