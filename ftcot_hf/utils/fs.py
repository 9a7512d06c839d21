"""Filesystem helpers: folders that appear complete or not at all (:func:`atomic_dir`), and the Hugging Face home
folder that our caches live under (:func:`hf_home`)."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

IfExists = Literal["replace", "keep"]


# -- atomic folders -------------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _sibling(dest: Path, kind: str) -> Path:
    """``.{name}.{kind}-<pid>-<rand>`` next to ``dest``: hidden, on the same filesystem (so renames are atomic), and
    naming its writer so that leftovers of dead processes can be told apart from work in progress."""
    return dest.parent / f".{dest.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_tmp(dest: str | os.PathLike[str]) -> list[Path]:
    """Delete the siblings of ``dest`` that :func:`atomic_dir` left behind in processes that are gone (killed mid-way):
    ``.{name}.tmp-<pid>[-<rand>]`` (a folder being built) and ``.{name}.old-<pid>[-<rand>]`` (one being replaced).
    Those of live processes are work in progress and kept. Returns what was removed."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(?:tmp|old)-(\d+)(?:-[0-9a-f]+)?")
    removed = []
    for leftover in dest.parent.glob(f".{glob.escape(dest.name)}.*-*"):
        match = pattern.fullmatch(leftover.name)
        if match and not _pid_alive(int(match.group(1))):
            logger.info("Removing %s, left by an interrupted write of %s", leftover, dest.name)
            _remove(leftover)
            removed.append(leftover)
    return removed


def _move_into_place(tmp: Path, dest: Path, if_exists: IfExists) -> None:
    try:
        os.rename(tmp, dest)  # dest absent (or an empty folder, which rename replaces): done
        return
    except OSError:
        if not os.path.lexists(dest):
            raise
    if if_exists == "keep":
        logger.info("%s was completed by another process; keeping that copy", dest)
        _remove(tmp)
        return
    old: Path | None = _sibling(dest, "old")
    try:
        os.rename(dest, old)  # moved aside only now that the new folder is complete
    except FileNotFoundError:  # another writer moved it away meanwhile
        old = None
    try:
        os.rename(tmp, dest)
    except OSError:
        if old is not None and not os.path.lexists(dest):
            os.rename(old, dest)  # put the previous folder back
        raise
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], *, if_exists: IfExists = "replace") -> Iterator[Path]:
    """Build a folder in a hidden sibling and move it to ``dest`` only when the ``with`` body has finished.

    The body writes into the yielded folder ``.{name}.tmp-<pid>-<rand>`` (same parent as ``dest``). On success it is
    renamed to ``dest``; on any error (``KeyboardInterrupt`` included) it is deleted and ``dest`` is left as it was.
    So ``dest`` is absent, the previous complete folder or the new complete one, never half-written. Leftovers of
    killed processes are removed first (:func:`remove_stale_tmp`); a SIGKILL leaves only a hidden sibling behind.

    Args:
        dest: the folder to produce; its parent is created.
        if_exists: when ``dest`` exists once the new folder is complete: ``"replace"`` (the default) moves the old one
            aside, renames the new one in and deletes the old one (an output of other inputs); ``"keep"`` keeps the
            existing one and discards ours (content-addressed folders: a concurrent writer's copy has the same
            content and may already be in use).

    Raises:
        ValueError: ``if_exists`` is neither ``"replace"`` nor ``"keep"``.

    Example::

        with atomic_dir(Path("out/student")) as tmp:
            model.save_pretrained(tmp)
    """
    if if_exists not in ("replace", "keep"):
        raise ValueError(f"atomic_dir(if_exists={if_exists!r}): use 'replace' or 'keep'.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(dest)
    tmp = _sibling(dest, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _move_into_place(tmp, dest, if_exists)
    except BaseException:
        _remove(tmp)
        raise


# -- locations ------------------------------------------------------------------------------------------------------
def hf_home() -> Path:
    """The Hugging Face home folder, by huggingface_hub's rule: ``$HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``,
    else ``~/.cache/huggingface`` (``~`` and ``$VARS`` expanded), read from the environment at each call.

    Not ``huggingface_hub.constants.HF_HOME`` itself: that constant is this rule evaluated once, when huggingface_hub
    is first imported (a module-level ``os.getenv`` in ``huggingface_hub/constants.py``, checked in 2.4), so a later
    change of the environment (``monkeypatch.setenv`` in a test, ``os.environ["HF_HOME"] = ...`` in a notebook after
    importing transformers) would not be seen. With the environment as it was at import the two agree
    (``tests/test_utils.py`` checks it). An empty variable counts as unset (the constant would take ``""``).
    """
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home)))
