"""The ``datasets`` builder of the paper's tasks (a ``TaskSource``), and :func:`load_task` (any task).

``datasets`` >= 4 no longer runs loading scripts, so the builder is a plain ``GeneratorBasedBuilder`` subclass used
directly (``FtcotTasks(config_name="coin_flip").download_and_prepare()``; ``load_task`` does that). One config per
task and split variant, named ``{task}`` or ``{task}__{variant}`` like the paper's split files. For code-free
``load_dataset`` use the Hub-ready export of ``dataset_scripts/export_tasks.py``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from ftcot_hf.errors import MissingSourceError, SourceFormatError
from ftcot_hf.tasks import BUILTIN_TASKS, TASKS, Task, resolve_task
from ftcot_hf.tasks.sources import resolve

logger = logging.getLogger(__name__)


def task_features(task: Task | None = None, *, has_choices: bool | None = None) -> datasets.Features:
    """The declared columns of a task's records."""
    if has_choices is None:
        has_choices = bool(task and task.has_choices)
    features = {
        "sample_index": datasets.Value("int64"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "rationale": datasets.Value("string"),
    }
    if has_choices:
        features["choices"] = datasets.List({"label": datasets.Value("string"), "text": datasets.Value("string")})
    return datasets.Features(features)


def config_name(task: str, split_variant: str = "default") -> str:
    return task if split_variant == "default" else f"{task}__{split_variant}"


@dataclass
class FtcotTaskConfig(datasets.BuilderConfig):
    """One task and one split variant. ``data_dir`` is an offline mirror (else ``$FTCOT_DATA_MIRROR``, else the
    files are downloaded)."""

    task: str = "coin_flip"
    split_variant: str = "default"
    verify_checksums: bool = True


def _code_version() -> str:
    # The cache must not outlive a change of how records are built: key it on the task code itself (answers.py,
    # the gold normalisation, is one of these files).
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class FtcotTasks(datasets.GeneratorBasedBuilder):
    """The Fine-tune-CoT tasks with the paper's exact records and splits."""

    BUILDER_CONFIG_CLASS = FtcotTaskConfig
    BUILDER_CONFIGS = [
        FtcotTaskConfig(
            name=config_name(name, variant),
            task=name,
            split_variant=variant,
            description=f"{TASKS[name].title}, {variant} split",
        )
        for name in BUILTIN_TASKS
        for variant in TASKS[name].split_variants()
    ]
    DEFAULT_CONFIG_NAME = "coin_flip"

    def __init__(self, *args, task: Task | None = None, **kwargs):
        # A registered task of its own (a 13th paper-style task) is passed as an object; built-ins by config.
        self._task = task
        kwargs.setdefault("dataset_name", "ftcot_tasks")
        kwargs.setdefault("hash", _code_version())
        super().__init__(*args, **kwargs)

    @property
    def task(self) -> Task:
        return self._task if self._task is not None else TASKS[self.config.task]

    @property
    def spec(self) -> Any:
        """The task's ``TaskSource``."""
        return self.task.source

    def _info(self) -> datasets.DatasetInfo:
        task = self.task
        return datasets.DatasetInfo(
            description=task.description,
            features=task_features(task),
            homepage=task.homepage,
            license=task.license,
            citation=task.citation,
        )

    def _split_generators(self, dl_manager):
        spec, name = self.spec, self.task.name
        spec.check_variant(self.config.split_variant, name)
        paths: dict[str, Path | None] = {}
        for role, source in spec.sources.items():
            try:
                paths[role] = resolve(
                    source,
                    data_dir=self.config.data_dir,
                    dl_manager=dl_manager,
                    verify_checksum=self.config.verify_checksums,
                )
            except (MissingSourceError, FileNotFoundError, OSError) as e:
                if role not in spec.optional_sources:
                    raise
                logger.warning(
                    "%s: optional source %s is not available (%s). Only the splits that do not need it are built. "
                    "Download %s into the mirror (as %s) to build them too.",
                    name,
                    source.path,
                    type(e).__name__,
                    source.url,
                    source.mirror_path,
                )
                paths[role] = None
        template = None
        if self.config.split_variant == "template":
            template = resolve(
                spec.template_split,
                data_dir=self.config.data_dir,
                dl_manager=dl_manager,
                verify_checksum=self.config.verify_checksums,
            )
        records = dict(spec.build(paths))
        splits = spec.split_indices(self.config.split_variant, template)
        generators = []
        for split, indices in splits.items():
            missing = [i for i in indices if i not in records]
            if missing and len(missing) == len(indices) and any(p is None for p in paths.values()):
                continue  # the optional source behind this split is absent (warned above)
            if missing:
                raise SourceFormatError(
                    f"{name}: the {split} split of variant {self.config.split_variant!r} refers to "
                    f"{len(missing)} sample indices the sources do not have (first: {missing[:5]})."
                )
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"records": records, "indices": indices}))
        return generators

    def _generate_examples(self, records, indices):
        for index in indices:
            rec = records[index]
            yield index, {"sample_index": index, **rec}


_VARIANT = re.compile(r"default|template|\d+shot")


def load_task(
    name: str | Task,
    split_variant: str = "default",
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download_mode: str | None = None,
    verify_checksums: bool = True,
) -> datasets.DatasetDict:
    """Build (or read from cache) one Fine-tune-CoT task with the paper's records and splits.

    Args:
        name: a task name (``ftcot_hf.TASKS``: ``"coin_flip"``, or one registered with ``register_task``) or a
            :class:`~ftcot_hf.Task` (e.g. ``Task.from_dataset(...)``).
        split_variant: ``"default"`` (the paper's split), ``"template"`` (multiarith, date_understanding) or
            ``"{n}shot"`` (n training questions, the paper's 8/32/128-shot ablations; test unchanged).
        data_dir: offline mirror directory laid out ``{owner}__{repo}/{path}``; defaults to ``$FTCOT_DATA_MIRROR``,
            and without either the raw files are downloaded from their public URLs (and cached by ``datasets``).
        cache_dir: ``datasets`` cache directory (default ``$HF_DATASETS_CACHE``).
        download_mode: ``"reuse_dataset_if_exists"`` (default) or ``"force_redownload"``...
        verify_checksums: check every raw file's sha256 (leave on; off only to read a deliberately edited mirror).

    Returns:
        ``DatasetDict`` with ``train`` and ``test`` (only ``test`` for AQuA without its train file); rows carry
        ``sample_index``, ``question``, ``answer``, ``rationale`` and, for multiple-choice tasks, ``choices``.

    Raises:
        UnknownTaskError: unknown task or split variant (the message lists the valid ones).
        MissingSourceError: the mirror lacks a file (the message names it and its public URL).
        ChecksumMismatchError: a raw file is not the pinned one (expected and actual sha256, how to fix).
        SourceFormatError: a raw file is malformed (file and line).

    Example:
        >>> ds = load_task("coin_flip")
        >>> ds["train"].num_rows, ds["test"].num_rows
        (350, 150)
    """
    return resolve_task(name).load(
        split_variant,
        data_dir=data_dir,
        cache_dir=cache_dir,
        download_mode=download_mode,
        verify_checksums=verify_checksums,
    )


def build_task(
    task: Task,
    split_variant: str = "default",
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download_mode: str | None = None,
    verify_checksums: bool = True,
) -> datasets.DatasetDict:
    """Build (or read from the ``datasets`` cache) a task whose source is a ``TaskSource`` (see :func:`load_task`)."""
    task.check_variant(split_variant)
    registered = {c.name for c in FtcotTasks.BUILDER_CONFIGS}
    cname = config_name(task.name, split_variant)
    kwargs: dict = {"verify_checksums": verify_checksums}
    if task.name not in BUILTIN_TASKS:  # a registered paper-style task: its own config, keyed on its name
        cname = None
        kwargs.update(name=task.name, task=task.name, split_variant=split_variant)
    elif cname not in registered:  # an n-shot size the paper did not use: same config family, other variant
        cname, kwargs["split_variant"] = task.name, split_variant
    if data_dir is not None:
        kwargs["data_dir"] = str(Path(data_dir).expanduser().resolve())
    elif os.environ.get("FTCOT_DATA_MIRROR"):
        # Key the cache on the mirror too, so switching mirrors never serves another mirror's build.
        kwargs["data_dir"] = str(Path(os.environ["FTCOT_DATA_MIRROR"]).expanduser().resolve())
    builder = FtcotTasks(config_name=cname, cache_dir=str(cache_dir) if cache_dir else None, task=task, **kwargs)
    builder.download_and_prepare(download_mode=download_mode)
    return builder.as_dataset()
