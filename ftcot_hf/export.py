"""Write datasets as Hub-ready repositories: Parquet files + a README whose YAML ``configs:`` lets
``datasets.load_dataset(folder_or_repo, config)`` read them with no code. Cards are rendered from ``model_cards/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

logger = logging.getLogger(__name__)


def template_path(name: str) -> Path:
    """A card template of ``model_cards/`` (packaged as ``ftcot_hf/model_cards`` in wheels)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "model_cards", here.parent / "model_cards"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"Card template {name} not found in ftcot_hf/model_cards or model_cards/.")


def write_dataset_repo(
    out_dir: str | Path,
    configs: dict[str, Any],
    *,
    template: str,
    card_data: dict[str, Any],
    **template_kwargs: Any,
) -> Path:
    """Write ``{config}/{split}-00000-of-00001.parquet`` for each config (a ``DatasetDict``) and ``README.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    yaml_configs = []
    for name, dataset_dict in configs.items():
        files = []
        for split, data in dataset_dict.items():
            rel = f"{name}/{split}-00000-of-00001.parquet"
            data.to_parquet(str(out / rel))
            files.append({"split": split, "path": rel})
        yaml_configs.append({"config_name": name, "data_files": files})
    card = DatasetCard.from_template(
        DatasetCardData(configs=yaml_configs, **card_data),
        template_path=str(template_path(template)),
        example_config=yaml_configs[0]["config_name"],
        **template_kwargs,
    )
    card.save(out / "README.md")
    logger.info("Wrote %s (%d configs)", out, len(yaml_configs))
    return out


def licenses_of(licenses: set[str]) -> list[str]:
    """Hub licence ids for a set of free-text licences; anything unknown becomes 'other'."""
    known = sorted({lic.split(" ")[0].lower() for lic in licenses} & {"mit", "apache-2.0"})
    unknown = any(lic.split(" ")[0].lower() not in ("mit", "apache-2.0") for lic in licenses)
    return known + (["other"] if unknown else [])
