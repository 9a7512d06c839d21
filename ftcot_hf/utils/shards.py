"""Rows written to disk as they are produced: :class:`ShardWriter` (Arrow stream shards, memory-mapped back).

Why: teaching 1M questions with 8 KB reasoning traces produces ~8 GB of rows. ``Dataset.map(keep_in_memory=True)``
held all of them in RAM before anything was written; a map with a cache file would be keyed on a fingerprint that
cannot know what a server answers now (the request cache is the only cache of teacher output). So the augmentation
writes each chunk's rows to an Arrow stream file (the format of ``datasets``' own cache files, written with no
encoding cost) and closes a shard every ``shard_rows`` rows or ``flush_seconds`` seconds: a closed shard is complete,
so while a long run goes on ``load_dataset("arrow", data_files="<folder>/*.arrow")`` reads what exists. At the end
the shards are memory-mapped (``Dataset.from_file``) and concatenated: the rows never come back into RAM.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError

logger = logging.getLogger(__name__)

SHARD_ROWS = 100_000
"""Rows per shard at most (a shard is also closed every ``flush_seconds``)."""
PARTIAL_NAME = re.compile(r"\..+\.partial-\d+-[0-9a-f]+")
"""The name of a folder of rows being taught (:func:`ftcot_hf.utils.fs.partial_sibling`)."""
SHARDS_ATTRIBUTE = "_ftcot_shards"
"""Set on the dataset :meth:`ShardWriter.dataset` returns: its shard files (``export`` streams them to Parquet)."""
RATIONALE_SAMPLE = 1000
"""About this many kept rows are sampled as they go by (:data:`SAMPLE_ATTRIBUTE`)."""
SAMPLE_ATTRIBUTE = "_ftcot_rationale_sample"
"""Set on the rows ``augment`` (and ``ftcot merge``) return: an evenly spaced sample of them (``sample_index``,
``rationale``), taken as the rows went by, for the decontamination check."""
FLUSH_SECONDS = 120.0
"""A shard open longer than this is closed at the next write, so a running job's rows become readable."""


class RowsDiskFullError(FtcotError, OSError):
    """The rows being taught could not be written for lack of space: one line for the user, and an ``OSError`` with
    its errno for code that handles full disks (``ftcot run``'s stages)."""

    def __init__(self, message: str, code: int):
        FtcotError.__init__(self, message)
        self.errno = code


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextmanager
def _disk_errors(folder: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        code = e.errno if e.errno in DISK_ERRNOS else next(
            (n for n in DISK_ERRNOS if os.strerror(n).lower() in str(e).lower()), None
        )  # pyarrow reports errno 27 in its message, not as e.errno
        if code is None or isinstance(e, FtcotError):
            raise
        raise RowsDiskFullError(
            f"{os.strerror(code)} while writing the rows being taught to {folder}: every teacher reply so far is "
            "in the request cache. Free some space (or choose another --output_dir) and re-run the same command: "
            "it sends only what is not cached.",
            code,
        ) from None


class ShardWriter:
    """Append record batches to ``folder/{prefix}-{i:05d}.arrow`` shards; :meth:`dataset` maps them back.

    Args:
        folder: where the shards go (created; shards of an earlier writer there are removed first: a re-run starts
            from the request cache, not from a killed run's partial rows).
        features: the ``datasets.Features`` of the rows (one schema for every shard).
        shard_rows / flush_seconds: when to close a shard.
    """

    def __init__(
        self,
        folder: str | Path,
        features: Any,
        *,
        prefix: str = "train",
        shard_rows: int = SHARD_ROWS,
        flush_seconds: float = FLUSH_SECONDS,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f"{prefix}-*.arrow"):
            stale.unlink()
        self.features = features
        self.schema = features.arrow_schema
        self.prefix, self.shard_rows, self.flush_seconds = prefix, shard_rows, flush_seconds
        self.files: list[Path] = []
        self.num_rows = 0
        self._sink: Any = None
        self._writer: Any = None
        self._opened = 0.0
        self._rows_in_shard = 0

    def write(self, columns: dict[str, list]) -> None:
        """Append rows given as columns (missing columns of the schema are null)."""
        import pyarrow as pa

        n = len(next(iter(columns.values()))) if columns else 0
        if not n:
            self._maybe_rotate()
            return
        table = pa.Table.from_pydict(
            {name: columns.get(name, [None] * n) for name in self.schema.names}, schema=self.schema
        )
        with _disk_errors(self.folder):
            if self._writer is None:
                self._open()
            self._writer.write_table(table)
        self.num_rows += n
        self._rows_in_shard += n
        self._maybe_rotate()

    def _open(self) -> None:
        import pyarrow as pa

        path = self.folder / f"{self.prefix}-{len(self.files):05d}.arrow"
        tmp = path.with_suffix(".arrow.tmp")  # a shard is readable under its name only once complete
        self._sink = pa.OSFile(str(tmp), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._path, self._tmp = path, tmp
        self._opened = time.monotonic()
        self._rows_in_shard = 0

    def _maybe_rotate(self) -> None:
        if self._writer is None:
            return
        if self._rows_in_shard >= self.shard_rows or time.monotonic() - self._opened >= self.flush_seconds:
            self._close_shard()

    def _close_shard(self) -> None:
        writer, sink, self._writer, self._sink = self._writer, self._sink, None, None
        with _disk_errors(self.folder):
            try:
                writer.close()
            finally:
                sink.close()
        self._tmp.replace(self._path)
        self.files.append(self._path)
        logger.debug("closed shard %s (%d rows so far)", self._path, self.num_rows)

    def close(self) -> None:
        if self._writer is not None:
            self._close_shard()

    def dataset(self) -> Any:
        """Every row written, as one ``datasets.Dataset`` memory-mapped from the shards (empty: no shard)."""
        import datasets

        self.close()
        if not self.files:
            return datasets.Dataset.from_dict({name: [] for name in self.features}, features=self.features)
        parts = [datasets.Dataset.from_file(str(f)) for f in self.files]
        data = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        setattr(data, SHARDS_ATTRIBUTE, [str(f) for f in self.files])  # export streams them, not through the map
        return data

    def remove(self) -> None:
        """Delete the folder (the rows' memory maps stay valid until they are dropped)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def discard_staged(datasets: Any) -> None:
    """Delete the shards the given datasets were taught into (``ftcot teach``'s ``.<output_dir>.partial-<pid>-<rand>``
    folders, once their rows are saved or given up), and such a folder once it holds nothing more. Only folders of
    that name are touched."""
    for data in datasets:
        files = getattr(data, SHARDS_ATTRIBUTE, None)
        if not files:
            continue
        folder = Path(files[0]).parent
        if not PARTIAL_NAME.fullmatch(folder.parent.name):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:  # another task's shards are still there
            pass


def read_batches(dataset: Any, batch_size: int, columns: list[str] | None = None) -> Iterator[dict[str, list]]:
    """The rows of ``dataset``, ``batch_size`` at a time, as columns of Python values (``dataset[a:b]``'s; only
    ``columns`` when given).

    Where the dataset is its Arrow files read in order (datasets' cache files: what ``Dataset.map`` wrote, with no
    indices mapping, slice or renamed column over them), they are read as a stream with ordinary reads: slicing the
    memory map instead leaves every page it touched resident in the process, the part of the peak RSS that grew
    with the number of questions (~60 MB of question records at 1M). Any other dataset is sliced."""
    files = _stream_files(dataset)
    if files is None:
        if columns is not None:
            dataset = dataset.select_columns(columns)
        for start in range(0, dataset.num_rows, batch_size):
            yield dataset[start : start + batch_size]
        return
    import pyarrow as pa

    features = dataset.features
    if columns is not None:
        features = type(features)({name: features[name] for name in columns})
    pending: list[Any] = []
    rows = 0
    for path in files:
        with pa.OSFile(path) as source:
            for record_batch in pa.ipc.open_stream(source):
                pending.append(record_batch if columns is None else record_batch.select(columns))
                rows += record_batch.num_rows
                while rows >= batch_size:
                    table = pa.Table.from_batches(pending)
                    yield features.decode_batch(table.slice(0, batch_size).to_pydict())
                    rest = table.slice(batch_size)
                    pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield features.decode_batch(pa.Table.from_batches(pending).to_pydict())


def _stream_files(dataset: Any) -> list[str] | None:
    """The Arrow stream files that hold exactly ``dataset``'s rows and columns in order (memory-mapped tables that
    no operation was replayed on but a schema's metadata: no slice, select, rename), or None."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    if getattr(dataset, "_indices", None) is not None or getattr(dataset, "format", {}).get("type") is not None:
        return None
    table = getattr(dataset, "data", None)
    if isinstance(table, MemoryMappedTable):
        blocks = [table]
    elif isinstance(table, ConcatenationTable) and all(len(row) == 1 for row in table.blocks):
        blocks = [row[0] for row in table.blocks]
    else:
        return None
    harmless = {"replace_schema_metadata"}  # what datasets replays on every table it writes
    if not all(isinstance(b, MemoryMappedTable) and {op for op, *_ in b.replays} <= harmless for b in blocks):
        return None
    return [b.path for b in blocks]
