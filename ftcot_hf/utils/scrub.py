"""The one scrubber: what every writer (configs, reports, cards, pushed files) and every message (errors, logs) goes
through so that no secret leaves the process.

Three rules, applied by :func:`redact` (values) and :func:`scrub_text` (text):

* a value under a secret-looking name (``api_key``, ``extra_body.user_token``, ``Authorization``, ``hub_token``...:
  :func:`is_secret_name`), at any depth of nested dicts and lists, is replaced by ``<redacted>`` and remembered;
* a URL loses its ``user:password@`` and the values of its query string (``?api-key=***``);
* every remembered secret (:func:`register`) is masked in its raw form and in the forms a server echoes it in: URL
  percent-encoding, JSON escaping, base64 (the ``Authorization: Basic base64(user:password)`` header), and any
  ``Bearer``/``Basic`` credential.

Log records are scrubbed when they are made (:func:`install_log_scrubber`, a record factory), so every handler, the
CLI's, a test's or a user's, receives the scrubbed text.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

REDACTED = "<redacted>"
MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not masked in text: they would mask innocent words."""
NOT_SECRETS = frozenset({"EMPTY", "none", "None", "null", "true", "false"})
"""Placeholders that are no secret (``EMPTY`` is the key a local vLLM server accepts)."""

_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd", "authorization", "auth",
                           "credential", "credentials", "cookie", "bearer", "jwt"})  # fmt: skip
_SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "passwd")
"""Run-together names (``usertoken``, ``clientsecret``): the last word ends with one of these."""
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: Any) -> bool:
    """Whether a key of that name holds a secret: one of its words is ``key``, ``token``, ``secret``, ``password``,
    ``authorization``... (``max_tokens`` is not: a plural names a count; ``api_key_env`` is not: it names a
    variable)."""
    if not isinstance(name, str):
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower()) if w]
    if not words or words[-1] in ("env", "var", "file", "path", "name", "names", "id", "type", "count"):
        return False
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in words)


# -- the secrets of this process --------------------------------------------------------------------------------------
_lock = threading.Lock()
_forms: list[str] = []
"""Every known secret in every form it is masked in, longest first."""
_known: set[str] = set()


def _b64(value: str) -> set[str]:
    raw = value.encode()
    std, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    return {std, std.rstrip("="), url, url.rstrip("=")}


def forms_of(secret: str) -> set[str]:
    """The forms ``secret`` may be echoed in: raw, percent-encoded (both ways), JSON-escaped, base64."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret), json.dumps(secret)[1:-1]}
    forms |= _b64(secret)
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def register(*secrets: Any) -> None:
    """Remember secrets: from now on every message and everything written masks them (for the process's lifetime: a
    secret logged later would be as bad). Values too short or placeholders (``EMPTY``) are ignored."""
    new = {str(s) for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH and s not in NOT_SECRETS}
    with _lock:
        new -= _known
        if not new:
            return
        _known.update(new)
        forms = set(_forms)
        for secret in new:
            forms |= forms_of(secret)
        _forms[:] = sorted(forms, key=len, reverse=True)
    install_log_scrubber()


def register_in(value: Any) -> None:
    """Remember every secret of a nested config (values under secret-looking names, URL credentials and query
    values), e.g. a teacher's options, before anything may echo them."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_secret_name(k):
                register(*_strings(v))
            else:
                register_in(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            register_in(v)
    elif isinstance(value, str) and "://" in value:
        for url in _URL.findall(value):
            register(*url_secrets(url))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _strings(v)


def known_secrets() -> list[str]:
    """Every registered secret (raw form), for tests and diagnostics that must check their absence."""
    with _lock:
        return sorted(_known)


# -- URLs -------------------------------------------------------------------------------------------------------------
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`\\]+")


def url_secrets(url: str) -> list[str]:
    """What of ``url`` must never be shown: its password, the ``user:password`` pair (what Basic auth sends,
    base64-encoded) and its query values, each as given and percent-decoded. Not the user name alone: it is no
    secret, and masking a common word ("ftcot", "admin") everywhere would garble every other message."""
    from urllib.parse import unquote

    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return [url]
    found = [password, *(v for _, v in parse_qsl(parts.query, keep_blank_values=True))]
    if user is not None or password is not None:
        found.append(f"{unquote(user or '')}:{unquote(password or '')}")
    found += [unquote(f) for f in found if f]
    return [f for f in dict.fromkeys(found) if f and len(f) >= MIN_SECRET_LENGTH]


def display_url(url: str) -> str:
    """``url`` without ``user:password@`` and with every query value replaced by ``***`` (a URL may carry
    credentials and keys, ``?api_key=...``; messages and logs must not)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # shown as typed (the user must see what to fix), less what could be secret
        scheme, sep, rest = url.partition("://")
        rest, _, fragment = (rest if sep else url).partition("#")
        rest, q, query = rest.partition("?")
        host, slash, path = rest.partition("/")
        query = "&".join(f"{item.partition('=')[0]}={MASK}" for item in query.split("&")) if q else ""
        return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}{q}{query}"
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query, fragment=""))


def scrub_url(url: str) -> str:
    """``url`` without credentials (``user:password@``) and without its query string (it may hold a key): what is
    written and published."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "") if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _mask_url(match: re.Match[str]) -> str:
    url = match.group(0)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc and not parts.query:
        return url
    register(*url_secrets(url))
    return display_url(url)


# -- text and values --------------------------------------------------------------------------------------------------
_CREDENTIAL = re.compile(
    r"(\bBearer(?:\s+|%20|\+)|\bAuthorization[\"']?\s*[:=]\s*[\"']?(?:(?:Basic|Bearer|Token)\s+)?)"
    r"[A-Za-z0-9._~+/=-]{6,}",
    re.IGNORECASE,
)
"""A credential whatever its value: ``Bearer <token>``, ``Authorization: <scheme> <value>`` (as headers are echoed
or logged); a registered one is masked in any context anyway."""


def scrub_text(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with URL credentials and query values masked, ``Bearer``/``Basic`` credentials masked, and every
    registered secret (and ``extra``) masked in each of its forms."""
    if not text:
        return text
    if "://" in text:
        text = _URL.sub(_mask_url, text)
    text = _CREDENTIAL.sub(lambda m: m.group(1) + MASK, text)
    extra_forms = sorted({f for s in extra if s and len(s) >= MIN_SECRET_LENGTH and s not in NOT_SECRETS
                          for f in forms_of(s)}, key=len, reverse=True)  # fmt: skip
    for form in [*extra_forms, *_forms]:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact(value: Any) -> Any:
    """A copy of ``value`` fit for writing: values under secret-looking names become ``<redacted>`` (at any depth,
    in dicts and lists), a URL loses its credentials and query (:func:`scrub_url`), every other string is
    :func:`scrub_text`-ed (URLs in it, known secrets)."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if is_secret_name(k) and v not in (None, "", {}, []) and not isinstance(v, bool):
                register(*_strings(v))
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        if _URL.fullmatch(value):  # a URL as a value (base_url): written without credentials or query at all
            register(*url_secrets(value))
            return scrub_url(value)
        return scrub_text(value)
    return value


# -- log records ------------------------------------------------------------------------------------------------------
_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record as it is made (message and traceback), whichever handler then writes it."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
            clean = scrub_text(message)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_info and record.exc_info[0] is not None:
                record.exc_text = scrub_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        except Exception:  # noqa: BLE001 -- a record whose arguments do not format is the logging module's to report
            pass
        return record

    logging.setLogRecordFactory(factory)
