"""Filesystem helpers: folders that appear complete or not at all (:func:`atomic_dir`), one writer at a time on a
folder (:func:`dir_lock`), cheap copies of a folder's files (:func:`link_tree`), and the Hugging Face home folder
that our caches live under (:func:`hf_home`)."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

try:
    import fcntl
except ImportError:  # not POSIX (Windows): dir_lock is then a no-op
    fcntl = None  # type: ignore[assignment]

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


def partial_sibling(dest: str | os.PathLike[str]) -> Path:
    """A new ``.{name}.partial-<pid>-<rand>`` next to ``dest`` (for a folder being built by :func:`atomic_dir`, next
    to the folder it becomes): where a writer puts what it has so far, one per call (two in one process do not
    share it), removed by :func:`remove_stale_tmp` once its process is gone."""
    final = final_dest(dest)
    return final.parent / f".{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def final_dest(path: str | os.PathLike[str]) -> Path:
    """The folder ``path`` becomes: itself, or for an :func:`atomic_dir` folder being built, its destination."""
    path = Path(os.path.abspath(path))
    building = re.fullmatch(r"\.(.+)\.tmp-\d+(?:-[0-9a-f]+)?", path.name)
    return path.with_name(building.group(1)) if building else path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_tmp(dest: str | os.PathLike[str]) -> list[Path]:
    """Delete the siblings of ``dest`` that :func:`atomic_dir` left behind in processes that are gone (killed mid-way):
    ``.{name}.tmp-<pid>[-<rand>]`` (a folder being built), ``.{name}.old-<pid>[-<rand>]`` (one being replaced) and
    ``.{name}.partial-<pid>-<rand>`` (the rows ``ftcot teach`` writes as it goes, :func:`partial_sibling`). Those of
    live processes are work in progress and kept. Returns what was removed."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(?:tmp|old|partial)-(\d+)(?:-[0-9a-f]+)?")
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


# -- one writer at a time ------------------------------------------------------------------------------------------
class DirLockTimeout(TimeoutError):
    """:func:`dir_lock` waited ``timeout`` seconds and another process still held the lock."""

    def __init__(self, dest: Path, lock_file: Path, timeout: float, holder: str) -> None:
        self.dest, self.lock_file, self.timeout, self.holder = dest, lock_file, timeout, holder
        super().__init__(f"{dest} is locked by another writer ({holder}; lock file {lock_file}) for more than "
                         f"{timeout:g} s")  # fmt: skip


def lock_path(dest: str | os.PathLike[str]) -> Path:
    """The lock file of ``dest`` for :func:`dir_lock`: the hidden sibling ``.{name}.lock``."""
    dest = Path(dest)
    return dest.parent / f".{dest.name}.lock"


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


@contextlib.contextmanager
def dir_lock(dest: str | os.PathLike[str], *, timeout: float | None = None, poll: float = 0.1) -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``dest`` for the ``with`` body: an ``flock`` on its sibling
    ``.{name}.lock`` (:func:`lock_path`), so that processes (and threads) writing ``dest`` take turns.

    A second writer waits, polling every ``poll`` seconds, up to ``timeout`` seconds (None: as long as it takes).
    The lock goes with its process: a killed holder leaves no stale lock (at most the file, reused by the next one).
    The holder deletes the lock file when it is done; a waiter that then acquires the deleted file notices and
    locks the new one, so two writers never hold "the" lock at once. ``dest`` itself need not exist; its parent is
    created. The file holds the holder's pid (named when a waiter gives up). Without ``fcntl`` (not POSIX) nothing
    is locked.

    Raises:
        DirLockTimeout: another process still held the lock after ``timeout`` seconds (a ``TimeoutError``).

    Example::

        with dir_lock(out, timeout=600), atomic_dir(out) as tmp:
            write_everything(tmp)
    """
    dest = Path(dest)
    path = lock_path(dest)
    if fcntl is None:
        yield path
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DirLockTimeout(dest, path, float(timeout or 0), _holder(path)) from None
                    time.sleep(poll)
            try:  # still the file at `path`? (its previous holder deletes it on release)
                held, current = os.fstat(fd), os.stat(path)
                if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                    break
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: a waiter on this file retries on the next one
        os.close(fd)


def link_tree(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, exclude: frozenset[str] = frozenset()
              ) -> None:  # fmt: skip
    """Put every entry of the folder ``src`` into the existing folder ``dst``, except the top-level names in
    ``exclude``: files as hard links where the filesystem allows (instant, no extra space; fine for files that are
    replaced, never edited in place), else copies; symlinks as symlinks."""

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    src, dst = Path(src), Path(dst)
    for entry in src.iterdir():
        if entry.name in exclude:
            continue
        target = dst / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=link_or_copy)
        else:
            link_or_copy(str(entry), str(target))


# -- locations ------------------------------------------------------------------------------------------------------
def check_folder(path: str | os.PathLike[str], flag: str = "--output_dir", what: str = "the folder") -> None:
    """Refuse, before any work, a folder to be written that cannot be one: ``path`` (or a folder above it) is a file.
    (Which would otherwise fail only when written, after loading or teaching: FileExistsError, NotADirectoryError.)"""
    from ftcot_hf.errors import FtcotError

    target = Path(os.path.abspath(os.path.expanduser(path)))
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                raise FtcotError(f"Cannot write to {what} {path}: {folder} is a file, not a folder. Choose another "
                                 f"{flag} (it is created if missing).")  # fmt: skip
            return


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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The file's sha256 (hex), read 1 MiB at a time: a file of gigabytes never sits in memory."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
