"""Base URLs of HTTP teachers: what is sent (:func:`client_url`: the query as parameters, ``user:password@`` as Basic
auth), what is shown (:func:`display_url`: no credentials, query values masked), what is checked before any request
(:func:`check_base_url`), which key goes to which host (:func:`resolve_api_key`), and the filter that keeps the secrets
of a URL out of every message and log record (:func:`register_secrets`, through :mod:`ftcot_hf.utils.scrub`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from ftcot_hf.utils.scrub import display_url, register
from ftcot_hf.utils.scrub import url_secrets as url_secrets  # the scrubber owns what of a URL is secret

HF_HOST_SUFFIXES = ("huggingface.co", "hf.co", "huggingface.cloud", "hf.space")


def client_url(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """What a client needs of a base URL: the URL without credentials and query (the client appends the request
    path to it: a query string would end up before the path), the query as parameters of every request, and an
    ``Authorization: Basic`` header for ``user:password@`` (it replaces the bearer key: a server behind such a URL,
    a proxy, authenticates that way)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    headers: dict[str, str] = {}
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    clean = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="")
    return urlunsplit(clean), query, headers


BASE_URL_EXAMPLE = "http://localhost:8000/v1"


def check_base_url(url: str) -> str | None:
    """Why ``url`` cannot be a server's API root (None when it can): it needs an http(s) scheme and a host. Said
    before any request, so a typo fails at once rather than after a minute of retries."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError as e:
        return f"it is not a valid URL ({e})"
    if parts.scheme not in ("http", "https"):
        if parts.scheme and not parts.netloc and parts.path[:1].isdigit():  # localhost:8000
            return f"it has no scheme (did you mean http://{display_url(url)}/v1 ?)"
        return f"its scheme {parts.scheme!r} is not http or https" if parts.scheme else "it has no http(s):// scheme"
    if not parts.hostname:
        return "it has no host name"
    if any(c.isspace() for c in url):
        return "it contains spaces"
    return None


def is_hf_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == s or host.endswith("." + s) for s in HF_HOST_SUFFIXES)


def resolve_api_key(api_key: str | None, url: str, env: str = "OPENAI_API_KEY") -> str:
    """The argument, else ``$env`` (``$OPENAI_API_KEY`` by default), else the Hugging Face token (only for Hugging
    Face hosts: a user's HF token must not be sent to an arbitrary server), else ``"EMPTY"`` (what a local vLLM
    server accepts)."""
    if api_key:
        return api_key
    if os.environ.get(env):
        return os.environ[env]
    if is_hf_host(url):
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # an unreadable token file must not break teaching; the server will say 401
            token = None
        if token:
            return token
    return "EMPTY"


def split_urls(base_url: str | Sequence[str], label: str = "openai") -> list[str]:
    """One URL, a comma/space-separated string of them, or a list -> the list (without trailing slashes)."""
    urls = re.split(r"[,\s]+", base_url) if isinstance(base_url, str) else list(base_url)
    urls = [u.strip().rstrip("/") for u in urls if u and u.strip()]
    if not urls:
        raise ValueError(f"{label} teacher: base_url is empty; give the server's URL, e.g. {BASE_URL_EXAMPLE}")
    for url in urls:
        problem = check_base_url(url)
        if problem is not None:
            raise ValueError(
                f"{label} teacher: base_url {display_url(url)!r} is not a server's API root: {problem}; give one "
                f"like {BASE_URL_EXAMPLE}."
            )
    return urls


def register_secrets(secrets: Sequence[str]) -> None:
    """Have every message and log record (the client libraries' request log included) scrubbed of ``secrets``
    from now on: :func:`ftcot_hf.utils.scrub.register`."""
    register(*secrets)
