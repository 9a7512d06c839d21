"""Handing freed heap back to the system during long loops."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
    return trim  # glibc only: musl and macOS have none, and need none


def release_free_heap() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim(0)``; a no-op elsewhere).

    A teaching run frees thousands of 8 KB replies a second between longer-lived objects: glibc keeps the holes,
    and the resident heap crept ~40 bytes per question (12 MB at 300k questions, ~40 MB at 1M) though nothing
    was held. Called once per chunk of questions, it keeps the heap flat (bench/teach_scale.py)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
