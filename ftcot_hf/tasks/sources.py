"""Pinned raw source files: where they live, how to get them, how to check them.

A source is a file in a public GitHub repository at a fixed commit, identified by its sha256. It is fetched
from ``{base_url}/{repo}/{commit}/{path}`` through the ``datasets`` download manager (so it is cached like any
other download), or read from an offline mirror directory laid out as ``{owner}__{name}/{path}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcot_hf.errors import ChecksumMismatchError, MissingSourceError, SourceFormatError

logger = logging.getLogger(__name__)

MIRROR_ENV = "FTCOT_DATA_MIRROR"
"""Environment variable naming an offline mirror directory (layout ``{owner}__{name}/{path}``)."""

BASE_URL_ENV = "FTCOT_SOURCE_BASE_URL"
"""Environment variable overriding the raw-file host (a corporate proxy of raw.githubusercontent.com, say)."""

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"

KOJIMA_REPO = "kojima-takeshi188/zero_shot_cot"
"""Kojima et al.'s Zero-shot-CoT repository: most task files and the recorded text-davinci-002 logs."""
KOJIMA_COMMIT = "5ef330fcdeec0cd26aee27943504f91f8ec1c33c"
REFERENCE_REPO = "itsnamgyu/reasoning-teacher"
"""The paper's reference implementation: split files, few-shot exemplars, completion data."""
REFERENCE_COMMIT = "a2ca4d28d3bbabbd77106b76d06885d1a5eac0d9"


@dataclass(frozen=True)
class SourceFile:
    """One pinned file of a public repository."""

    repo: str
    """``owner/name`` on GitHub."""
    commit: str
    """Full commit SHA the file is pinned to."""
    path: str
    """Path of the file inside the repository."""
    sha256: str | None
    """Expected sha256 of the file's bytes; None where no copy was at hand to pin it (the file is then checked
    structurally by its task, and its digest logged so it can be pinned)."""
    license: str = "unknown"
    """Licence of the data, as far as it is known (see the task's docstring)."""

    @property
    def url(self) -> str:
        base = os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/{self.repo}/{self.commit}/{self.path}"

    @property
    def mirror_path(self) -> str:
        """Relative path of the file inside an offline mirror directory."""
        owner, name = self.repo.split("/", 1)
        return f"{owner}__{name}/{self.path}"


def mirror_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The offline mirror to use: ``data_dir`` if given, else ``$FTCOT_DATA_MIRROR``, else None (download)."""
    chosen = data_dir if data_dir is not None else os.environ.get(MIRROR_ENV) or None
    return Path(chosen).expanduser() if chosen is not None else None


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(source: SourceFile, path: Path, *, from_mirror: bool) -> None:
    actual = sha256_of(path)
    if source.sha256 is None:
        logger.warning("%s is not pinned by sha256; its sha256 is %s.", source.url, actual)
        return
    if actual == source.sha256:
        return
    if from_mirror:
        fix = (
            f"the mirror copy is not the pinned file: replace it with the file downloaded from {source.url} "
            f"(or unset {MIRROR_ENV} / data_dir to download it)"
        )
    else:
        fix = (
            "the cached download was removed; re-run to download it again. If this repeats, the host served a "
            f"different file: check {source.url} (or {BASE_URL_ENV})"
        )
    raise ChecksumMismatchError(
        f"Checksum mismatch for {path} ({source.repo}@{source.commit[:10]}:{source.path}): "
        f"expected sha256 {source.sha256}, got {actual}. Fix: {fix}."
    )


def resolve(
    source: SourceFile,
    *,
    data_dir: str | os.PathLike | None = None,
    dl_manager: Any = None,
    verify_checksum: bool = True,
) -> Path:
    """Local path of ``source``, from the mirror or downloaded (and cached) by ``dl_manager``; sha256 checked."""
    mirror = mirror_dir(data_dir)
    if mirror is not None:
        path = mirror / source.mirror_path
        if not path.is_file():
            raise MissingSourceError(
                f"The offline mirror {mirror} has no file {source.mirror_path} (looked for {path}). "
                f"Its public URL is {source.url}: download it to that path, or unset {MIRROR_ENV} / data_dir "
                "to let ftcot-hf download it."
            )
    else:
        if dl_manager is None:
            from datasets import DownloadManager

            dl_manager = DownloadManager()
        try:
            path = Path(dl_manager.download(source.url))
        except (OSError, ConnectionError) as e:  # datasets reports an unreachable host as FileNotFoundError(url)
            from urllib.parse import urlsplit

            host = urlsplit(source.url).hostname or source.url
            raise MissingSourceError(
                f"Could not download {source.path} of {source.repo} from {host} ({type(e).__name__}): the host is "
                f"unreachable or the file is gone. Offline, point {MIRROR_ENV} (or --data_dir) at a mirror folder "
                f"holding {source.mirror_path}; behind a proxy, set {BASE_URL_ENV}."
            ) from None
    if verify_checksum:
        try:
            verify(source, path, from_mirror=mirror is not None)
        except ChecksumMismatchError:
            if mirror is None:
                _evict_download(path)
            raise
    return path


def _evict_download(path: Path) -> None:
    # A bad download must not poison the cache: remove it and its datasets' metadata sidecars.
    for p in (path, path.with_name(path.name + ".json"), path.with_name(path.name + ".lock")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a syntax error (or bytes that are not UTF-8) names the file, line and column."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SourceFormatError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x}): no JSON file.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceFormatError(f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg}).") from None


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield one object per non-empty line; a malformed line (or one that is not UTF-8) names the file and its line
    number."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SourceFormatError(
                    f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}): not a JSON "
                    "Lines file."
                ) from None
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceFormatError(
                    f"{path}:{lineno}: malformed JSON line ({e.msg} at column {e.colno}): {line[:80]!r}"
                ) from None


def field(record: dict, key: str, *, path: str | os.PathLike, where: str) -> Any:
    """``record[key]`` or a SourceFormatError naming the file, the record and the missing field."""
    try:
        return record[key]
    except (KeyError, TypeError):
        raise SourceFormatError(
            f"{path}: {where} has no field {key!r} "
            f"(fields: {sorted(record) if isinstance(record, dict) else record!r})."
        ) from None
