"""Errors raised by ftcot-hf.

Every error is raised where the bad input is first known and says what was wrong, where (file, field, line)
and how to fix it. All of them derive from :class:`FtcotError` so callers can catch the family at once.
"""

from __future__ import annotations


class FtcotError(Exception):
    """Base class of every error ftcot-hf raises on purpose."""


class PluginTypeError(FtcotError, TypeError):
    """Something registered as a task, format, teacher backend or answer type that is not of that registry's base
    type (``ftcot_hf.Task``, ``StudentFormat``, ``Teacher``, ``AnswerParser``)."""


class UnknownTaskError(FtcotError, ValueError):
    """A task name (or split variant) that is not in the registry."""


class SourceError(FtcotError):
    """A raw source file could not be obtained or read."""


class MissingSourceError(SourceError, FileNotFoundError):
    """A source file is absent from the offline mirror (or was never published there)."""


class ChecksumMismatchError(SourceError):
    """A source file's sha256 differs from the pinned one."""


class SourceFormatError(SourceError, ValueError):
    """A source file is not in the format its task expects (malformed JSON, missing field...)."""
