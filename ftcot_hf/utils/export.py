"""Write datasets as Hub-ready repositories: Parquet files + a README whose YAML ``configs:`` lets
``datasets.load_dataset(folder_or_repo, config)`` read them with no code. Cards are rendered from the Jinja templates
of ``ftcot_hf/templates/`` (package data: in the wheel, read with ``importlib.resources``)."""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from ftcot_hf.utils.fs import sha256_file

logger = logging.getLogger(__name__)


TEMPLATES = "templates"
"""The folder of ``ftcot_hf`` holding the card templates (declared as package data in pyproject.toml)."""


def template_text(name: str) -> str:
    """The text of the card template ``name`` (e.g. ``"student_model_card.md"``) in ``ftcot_hf/templates/``.

    Read with ``importlib.resources``, so it works from a wheel or a zip as well as from the checkout.

    Raises:
        FileNotFoundError: no such template; the message lists the ones there are.
    """
    folder = importlib.resources.files("ftcot_hf") / TEMPLATES
    resource = folder / name
    if not resource.is_file():
        known = sorted(p.name for p in folder.iterdir() if p.name.endswith(".md")) if folder.is_dir() else []
        raise FileNotFoundError(
            f"Card template {name!r} is not in ftcot_hf/{TEMPLATES}/ (there: {', '.join(known) or 'nothing'}); "
            "if ftcot_hf was installed from a wheel, the wheel lacks its package data: reinstall it."
        )
    return resource.read_text(encoding="utf-8")


ROW_GROUP = 1000
"""Rows per Parquet row group of the rationale splits streamed from shards (8 MB of 8 KB traces)."""
LONG_TEXT = 256
"""Mean bytes a value above which a text column is written without a dictionary: every value of a rationale is
distinct, so the dictionary Parquet tries first (and drops) only costs memory, ~40 MB of the peak at 8 KB traces."""


def _write_parquet(data: Any, path: Path) -> None:
    """Write ``data`` as Parquet in row groups of :data:`ROW_GROUP` rows, whatever its batches: the same rows give the
    same bytes (and so the same content-hashed file name), however they were produced (one run, or parts merged).
    A dataset :class:`~ftcot_hf.utils.shards.ShardWriter` returned (its Arrow shards, memory-mapped) is read from its
    shard files a record batch at a time, not through the memory map: every page of a map that is read stays in the
    process's resident set, so writing 8 GB of shards that way showed 8 GB more RSS."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ftcot_hf.utils.shards import SHARDS_ATTRIBUTE

    schema = data.features.arrow_schema

    def batches() -> Any:
        files = getattr(data, SHARDS_ATTRIBUTE, None)
        if not files:
            yield from data.with_format("arrow").iter(batch_size=ROW_GROUP)
            return
        for f in files:
            with pa.OSFile(str(f)) as source:
                yield from pa.ipc.open_stream(source)

    pending: list[Any] = []
    held = 0
    writer = None
    try:
        for batch in batches():
            if not batch.num_rows:
                continue
            for part in (batch.to_batches() if isinstance(batch, pa.Table) else [batch]):
                pending.append(part.select(schema.names).cast(schema))
                held += part.num_rows
            while held >= ROW_GROUP:
                table = pa.Table.from_batches(pending, schema)
                group = table.slice(0, ROW_GROUP)
                writer = writer or pq.ParquetWriter(str(path), schema, use_dictionary=_dictionary_columns(group))
                writer.write_table(group, row_group_size=ROW_GROUP)
                rest = table.slice(ROW_GROUP)
                pending, held = rest.to_batches(), rest.num_rows
                pa.default_memory_pool().release_unused()  # Arrow's allocator keeps what a written group freed
        last = pa.Table.from_batches(pending, schema)
        writer = writer or pq.ParquetWriter(str(path), schema, use_dictionary=_dictionary_columns(last))
        if held:
            writer.write_table(last, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()


def _dictionary_columns(first: Any) -> list[str]:
    """The columns Parquet should dictionary-encode: all but text whose values in the first row group (the same
    rows give the same choice, so the same bytes) average over :data:`LONG_TEXT` bytes."""
    import pyarrow as pa

    names = []
    for name, column in zip(first.column_names, first.columns, strict=True):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = max(1, first.num_rows - column.null_count)
            if sum(chunk.nbytes for chunk in column.chunks) / values > LONG_TEXT:
                continue
        names.append(name)
    return names


def write_parquet_configs(
    out_dir: str | Path, configs: Mapping[str, Any]
) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Write each config's splits (a ``DatasetDict`` per config) as ``{config}/{split}-00000-of-00001-{hash}.parquet``.

    Returns (path in the folder -> file, the YAML ``configs`` entries naming each file). The content hash in the name
    matters: ``datasets`` caches a local folder under a key made from the folder's name, the config name and the
    ``data_files`` paths of its README, not from the files' contents, so two folders of the same name with
    fixed file names (two runs' ``rationales/``) would share one cache entry and the second would load the first's
    rows.
    """
    out = Path(out_dir)
    files: dict[str, Path] = {}
    yaml_configs = []
    for name, dataset_dict in configs.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        data_files = []
        for split, data in dataset_dict.items():
            for stale in folder.glob(f"{split}-00000-of-00001*.parquet"):
                stale.unlink()
            tmp = folder / f".{split}.parquet.tmp"
            _write_parquet(data, tmp)
            digest = sha256_file(tmp)[:16]
            rel = f"{name}/{split}-00000-of-00001-{digest}.parquet"
            tmp.replace(out / rel)
            files[rel] = out / rel
            data_files.append({"split": split, "path": rel})
        yaml_configs.append({"config_name": name, "data_files": data_files})
    return files, yaml_configs


def write_dataset_repo(
    out_dir: str | Path,
    configs: Mapping[str, Any],
    *,
    template: str,
    card_data: dict[str, Any],
    **template_kwargs: Any,
) -> Path:
    """Write each config (a ``DatasetDict``) with ``write_parquet_configs`` and a ``README.md`` card naming them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, yaml_configs = write_parquet_configs(out, configs)
    card = DatasetCard.from_template(
        DatasetCardData(configs=yaml_configs, **card_data),
        template_str=template_text(template),
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
