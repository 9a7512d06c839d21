"""Teachers behind HTTP APIs. :mod:`~ftcot_hf.teachers.http.core` holds the shared transport (:class:`HTTPTeacher`:
concurrency, fleets, retries; its pieces in ``transport.py`` and ``schedule.py``); each API is one
small module on top: :mod:`~ftcot_hf.teachers.http.openai` (:class:`OpenAITeacher`, backend ``openai``).
"""

from __future__ import annotations

from ftcot_hf.teachers.http.core import HTTPTeacher
from ftcot_hf.teachers.http.openai import OpenAITeacher
from ftcot_hf.teachers.http.transport import ResponseError

__all__ = ["HTTPTeacher", "OpenAITeacher", "ResponseError"]
