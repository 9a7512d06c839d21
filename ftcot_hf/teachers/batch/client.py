"""The few API calls a batch takes (upload, create, poll, download): stdlib HTTP, synchronous, retried on a refused
connection, 429 and 5xx; errors say what the API answered, scrubbed of keys. A mixin of :class:`~ftcot_hf.teachers.
batch.core.BatchTeacher` (it reads the teacher's ``backend``, ``timeout``, ``max_retries`` and keys)."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any, ClassVar

from ftcot_hf.teachers.base import TeacherError
from ftcot_hf.teachers.http.transport import parse_retry_after
from ftcot_hf.teachers.http.urls import client_url, display_url, resolve_api_key

logger = logging.getLogger(__name__)


class ApiError(TeacherError):
    """An API call answered with a status no retry fixes (``status``: the HTTP code)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ApiClient:
    """``api()``: one call of a provider's API."""

    backend: str
    example_url: ClassVar[str]
    api_key_env: str
    timeout: float
    max_retries: int
    stats: Counter[str]
    _keys: dict[str, str]

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def api(self, base: str, method: str, path: str, body: Any = None, *, data: bytes | None = None,
            content_type: str = "application/json", raw: bool = False) -> Any:  # fmt: skip
        """One API call (``path`` below ``base``, or a full URL), retried on a refused connection, 429 and 5xx (with
        ``Retry-After``); another status is a :class:`TeacherError` saying what the API answered (scrubbed)."""
        root, query, auth = client_url(base)
        url = path if path.startswith(("http://", "https://")) else root + path
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        headers = {**self.headers(self._keys.get(base) or resolve_api_key(None, base, self.api_key_env)), **auth}
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(self.max_retries + 1):
            self.stats["api_calls"] += 1
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    content = response.read()
                return content if raw else self._json(content, path)
            except urllib.error.HTTPError as e:
                content = e.read()
                if e.code != 429 and e.code < 500:
                    raise ApiError(f"{self.backend} teacher: {method} {display_url(url)} answered HTTP {e.code}: "
                                   f"{self._error_text(content)}; {self._hint(e.code)}", e.code) from None  # fmt: skip
                problem, retry_after = f"HTTP {e.code}", parse_retry_after(e.headers)
            except (urllib.error.URLError, OSError) as e:
                problem = f"cannot connect ({getattr(e, 'reason', e)})"
            if attempt == self.max_retries:
                raise TeacherError(
                    f"{self.backend} teacher: {method} {display_url(url)} failed {attempt + 1} "
                    f"time(s), last: {problem}; is --base_url the API root (e.g. {self.example_url})?"
                )
            wait = retry_after if retry_after is not None else min(30.0, 0.5 * 2**attempt)
            logger.info("%s teacher: %s %s: %s; retrying in %.1f s", self.backend, method, display_url(url), problem,
                        wait)  # fmt: skip
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _json(self, content: bytes, path: str) -> Any:
        try:
            return json.loads(content)
        except ValueError:
            raise TeacherError(f"{self.backend} teacher: the answer to {path} is not JSON; is --base_url the API "
                               f"root (e.g. {self.example_url})?") from None  # fmt: skip

    def _error_text(self, content: bytes) -> str:
        from ftcot_hf.utils.scrub import scrub_text

        try:
            data = json.loads(content)
            error = data.get("error", data) if isinstance(data, dict) else data
            text = error.get("message", error) if isinstance(error, dict) else error
        except ValueError:
            text = content.decode("utf-8", "replace")
        return scrub_text(" ".join(str(text).split()))[:300]

    def _hint(self, status: int) -> str:
        return {401: f"check the API key (${self.api_key_env}, or api_key in --teacher_kwargs)",
                403: "the key may not use this model or the batch API",
                404: f"check the model name and that --base_url is the API root (e.g. {self.example_url})"
                }.get(status, "the API rejected the request")  # fmt: skip


def multipart(fields: dict[str, str], name: str, filename: str, content: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with ``fields`` and one file; returns (body, content type)."""
    boundary = "ftcot" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]  # fmt: skip
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 "Content-Type: application/jsonl\r\n\r\n".encode() + content + b"\r\n")  # fmt: skip
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
