"""A loopback server speaking the part of the Hugging Face Hub API that ``huggingface_hub`` 2.4 and ``datasets`` 5.2
use to create, push to, list and download repositories -- so publishing code is tested over real HTTP with the real
client, not with a mocked ``HfApi``.

Point a process at it with ``HF_ENDPOINT=<server.endpoint>`` (read when ``huggingface_hub`` and ``datasets`` are
imported, so set it before importing them -- a subprocess is simplest), ``HF_HUB_DISABLE_XET=1`` and
``HF_TOKEN=<server.token>``. Small text files are "regular": their contents arrive inline (base64) in the NDJSON
commit. Binary formats (``*.parquet``, ``*.safetensors``... as in the Hub's default ``.gitattributes``) are "lfs",
as on the Hub: ``datasets`` deletes each Parquet shard's temporary file right after the preupload step, so only an
LFS upload (batch API + a PUT of the bytes + verify) can carry them. Xet is never offered.

Storage: blobs are content-addressed files under ``root/blobs``; a commit is a ``{path: blob}`` manifest; a branch
names a commit. :meth:`FakeHub.worktree` materialises any revision as a plain folder (hard links), which is what
``datasets.load_dataset(folder, config)`` reads.

Endpoints (``{t}`` = ``models`` | ``datasets``; ``{repo}`` = ``owner/name``; ``{rev}`` = URL-quoted branch or sha)::

    GET  /api/whoami-v2                              the token's user
    POST /api/repos/create                           {name, organization, type, visibility|private}; 409 + url
    GET  /api/{t}/{repo}[/revision/{rev}]            repo info: id, sha, private, siblings
    GET  /api/{t}/{repo}/refs                        branches
    POST /api/{t}/{repo}/branch/{branch}             create a branch (409 when it exists)
    POST /api/{t}/{repo}/preupload/{rev}             uploadMode "lfs" for binary formats, else "regular"; oid
    POST /[datasets/]{repo}.git/info/lfs/objects/batch   LFS batch (basic transfer): upload + verify actions
    PUT  /_lfs/{sha256}  POST /_lfs/{sha256}/verify  the LFS object store (sha256 and size are checked)
    POST /api/{t}/{repo}/commit/{rev}                NDJSON: header, file (base64), lfsFile, deletedFile, deletedFolder
    GET  /api/{t}/{repo}/tree/{rev}[/{path}]         listing (?recursive=true)
    POST /api/{t}/{repo}/paths-info/{rev}            info of given paths
    POST /api/validate-yaml                          YAML front matter of a README must parse to a mapping
    GET|HEAD /[datasets/]{repo}/resolve/{rev}/{path} file download (Range, ETag, X-Repo-Commit)

Anything else answers 404 and is recorded in :attr:`FakeHub.unhandled`, which is how the endpoint list above was
found. Writes need ``Authorization: Bearer <token>``; private repos are invisible (404) without it, as on the Hub.
The token is compared, never stored in a log: :attr:`FakeHub.requests` records ``authorized`` only.

The file is over 500 lines because it is one protocol: the endpoints above share the storage and the checks the
real Hub makes (its HTTP plumbing is ``tests/fake_http.py``'s).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.fake_http import JSONHandler, LoopbackHTTPServer, LoopbackServer

DEFAULT_TOKEN = "hf_fakeTOKEN0123456789abcdefSECRET"
DEFAULT_USER = "ftcot-tester"
LFS_PATTERNS = (
    "*.parquet", "*.safetensors", "*.bin", "*.arrow", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.h5", "*.onnx",
    "*.msgpack", "*.zip", "*.gz", "*.npy", "*.pkl",
)  # fmt: skip
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's size above which any file goes to LFS


def is_lfs(path: str, size: int = 0) -> bool:
    return size > LFS_THRESHOLD or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)


def git_sha1(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, str]
    """path -> blob id (git sha1 of the content)."""
    message: str
    parent: str | None
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created_with: dict[str, Any] = field(default_factory=dict)
    """The JSON body of the create request (name, organization, type, visibility...)."""

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)


@dataclass
class RecordedRequest:
    method: str
    path: str
    status: int
    authorized: bool


class _Server(LoopbackHTTPServer):
    fake: FakeHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients closing keep-alive connections is normal; anything else is recorded for the tests."""
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionResetError, BrokenPipeError)):
            self.fake.errors.append(f"{type(error).__name__}: {error}")


class _Handler(JSONHandler):
    server: _Server

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    @property
    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.fake.token}"

    def _dispatch(self, method: str) -> None:
        hub = self.server.fake
        self.status = 0
        url = urlsplit(self.path)
        try:
            handled = hub._route(self, method, url.path, parse_qs(url.query))
            if not handled:
                hub.unhandled.append((method, self.path))
                self._error(404, f"No route for {method} {url.path}")
        except Exception as e:  # noqa: BLE001 -- a server bug must answer 500, not hang the client
            hub.errors.append(f"{method} {self.path}: {type(e).__name__}: {e}")
            self._error(500, f"Fake hub error: {e}")
        with hub._lock:
            hub.requests.append(RecordedRequest(method, url.path, self.status, self._authorized))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")


_API = re.compile(r"^/api/(?P<t>models|datasets)/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_LFS_BATCH = re.compile(r"^/(?:(?P<t>datasets)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
_LFS_OBJECT = re.compile(r"^/_lfs/(?P<oid>[0-9a-f]{64})(?P<verify>/verify)?$")
_RESOLVE = re.compile(r"^/(?:(?P<t>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class FakeHub(LoopbackServer):
    """The fake Hub; see the module docstring. Use as a context manager or ``start()``/``stop()``."""

    handler = _Handler
    http_server = _Server

    def __init__(self, root: str | Path | None = None, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER):
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="fake_hub_"))
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, str] = {}
        """sha256 -> blob id of every object uploaded through LFS."""
        self._sha256: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.received: list[bytes] = []
        """Every request body received (for checking that no secret was sent inside content)."""
        self._lock = threading.RLock()
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        super().__init__()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        super().stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self, hf_home: str | Path) -> dict[str, str]:
        """Environment for a client process: this endpoint, no Xet, the token, an isolated HF_HOME."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        return env | {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": self.token,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    # -- what tests look at ----------------------------------------------------------------------------------------
    def repo(self, repo_type: str, repo_id: str) -> Repo:
        return self.repos[repo_type, repo_id]

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        commit = self.repo(repo_type, repo_id).resolve(revision)
        assert commit is not None, f"no revision {revision} in {repo_id}"
        return {path: self._blob(blob).read_bytes() for path, blob in sorted(commit.files.items())}

    def worktree(self, repo_type: str, repo_id: str, revision: str = "main") -> Path:
        """The files of ``revision`` as a plain folder (hard links to the blobs)."""
        commit = self.repo(repo_type, repo_id).resolve(revision)
        assert commit is not None, f"no revision {revision} in {repo_id}"
        out = self.root / "worktrees" / repo_type / repo_id.replace("/", "--") / commit.sha
        if not out.is_dir():
            tmp = out.with_name(out.name + ".tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            for path, blob in commit.files.items():
                (tmp / path).parent.mkdir(parents=True, exist_ok=True)
                os.link(self._blob(blob), tmp / path)
            os.rename(tmp, out)
        return out

    # -- storage -----------------------------------------------------------------------------------------------------
    def _blob(self, blob: str) -> Path:
        return self.root / "blobs" / blob

    def _put(self, data: bytes) -> str:
        blob = git_sha1(data)
        path = self._blob(blob)
        if not path.exists():
            path.write_bytes(data)
        self._sha256[blob] = hashlib.sha256(data).hexdigest()
        return blob

    def _oid(self, path: str, blob: str) -> str:
        """What preupload reports for an existing file: sha256 for LFS files, git sha1 otherwise."""
        size = self._blob(blob).stat().st_size
        return self._sha256[blob] if is_lfs(path, size) else blob

    def _commit(self, repo: Repo, branch: str, files: dict[str, str], message: str) -> Commit:
        parent = repo.branches.get(branch)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        payload = json.dumps([parent, sorted(files.items()), message, now, len(repo.commits)])
        commit = Commit(hashlib.sha1(payload.encode()).hexdigest(), files, message, parent, now)
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    def _url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo.repo_id}"

    def _entry(self, commit: Commit, path: str) -> dict[str, Any] | None:
        if path in commit.files:
            blob = commit.files[path]
            size = self._blob(blob).stat().st_size
            entry: dict[str, Any] = {"type": "file", "oid": blob, "size": size, "path": path}
            if is_lfs(path, size):
                entry["lfs"] = {"oid": self._sha256[blob], "size": size, "pointerSize": 134}
            return entry
        if any(p.startswith(path.rstrip("/") + "/") for p in commit.files) or path in ("", "/"):
            oid = hashlib.sha1(f"{commit.sha}:{path}".encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": path.strip("/")}
        return None

    # -- routing -----------------------------------------------------------------------------------------------------
    def _route(self, h: _Handler, method: str, path: str, query: dict[str, list[str]]) -> bool:
        if method == "POST":
            body = h._body()
            with self._lock:
                self.received.append(body)
        else:
            body = b""
        if path == "/api/whoami-v2" and method == "GET":
            if not h._authorized:
                h._error(401, "Invalid credentials in Authorization header")
            else:
                token = {"displayName": "fake", "role": "write"}
                h._json(200, {"type": "user", "id": "1", "name": self.user, "fullname": "ftcot tester", "orgs": [],
                              "auth": {"type": "access_token", "accessToken": token}})  # fmt: skip
            return True
        if path == "/api/repos/create" and method == "POST":
            self._create_repo(h, json.loads(body or b"{}"))
            return True
        if path == "/api/validate-yaml" and method == "POST":
            self._validate_yaml(h, json.loads(body or b"{}"))
            return True
        if (match := _LFS_BATCH.match(path)) and method == "POST":
            repo = self._visible(h, "dataset" if match["t"] else "model", match["repo"])
            if repo is not None:
                self._lfs_batch(h, json.loads(body or b"{}"))
            return True
        if match := _LFS_OBJECT.match(path):
            if method == "PUT" and not match["verify"]:
                body = h._body()
                self._lfs_put(h, match["oid"], body)
                return True
            if method == "POST" and match["verify"]:
                if match["oid"] in self.lfs_objects:
                    h._json(200, {})
                else:
                    h._error(404, "Object not uploaded")
                return True
            return False
        if match := _RESOLVE.match(path):
            if method not in ("GET", "HEAD"):
                return False
            repo_type = "dataset" if match["t"] else "model"
            self._resolve(h, method, repo_type, match["repo"], unquote(match["rev"]), unquote(match["path"]))
            return True
        if match := _API.match(path):
            repo_type = match["t"][:-1]
            return self._repo_api(h, method, repo_type, match["repo"], match["rest"] or "", query, body)
        return False

    def _visible(self, h: _Handler, repo_type: str, repo_id: str) -> Repo | None:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not h._authorized):
            h._error(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
            return None
        return repo

    def _create_repo(self, h: _Handler, payload: dict[str, Any]) -> None:
        if not h._authorized:
            return h._error(401, "Invalid credentials in Authorization header")
        owner = payload.get("organization") or self.user
        repo_type = payload.get("type") or "model"
        repo_id = f"{owner}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                url = self._url(self.repos[repo_type, repo_id])
                return h._json(409, {"error": "You already created this repo", "url": url})
            repo = Repo(repo_type, repo_id, private, created_with=payload)
            self._commit(repo, "main", {".gitattributes": self._put(GITATTRIBUTES)}, "initial commit")
            self.repos[repo_type, repo_id] = repo
        return h._json(200, {"url": self._url(repo), "name": repo_id, "id": repo_id})

    def _validate_yaml(self, h: _Handler, payload: dict[str, Any]) -> None:
        content = str(payload.get("content", ""))
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        errors = []
        if match:
            try:
                data = yaml.safe_load(match.group(1))
                if data is not None and not isinstance(data, dict):
                    errors.append("YAML metadata is not a mapping")
            except yaml.YAMLError as e:
                errors.append(f"Invalid YAML: {e}")
        if errors:
            return h._json(400, {"errors": [{"message": m} for m in errors]}, {"X-Error-Message": errors[0]})
        return h._json(200, {"errors": [], "warnings": []})

    def _repo_api(
        self,
        h: _Handler,
        method: str,
        repo_type: str,
        repo_id: str,
        rest: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> bool:
        parts = rest.strip("/").split("/", 2) if rest.strip("/") else []
        action = parts[0] if parts else ""
        if method == "GET" and action in ("", "revision"):
            repo = self._visible(h, repo_type, repo_id)
            if repo is None:
                return True
            commit = repo.resolve(unquote(parts[1]) if action == "revision" and len(parts) > 1 else "main")
            if commit is None:
                h._error(404, "Invalid rev id", "RevisionNotFound")
                return True
            h._json(200, {
                "id": repo_id, "_id": repo_id, "author": repo_id.split("/")[0], "sha": commit.sha,
                "private": repo.private, "disabled": False, "gated": False, "lastModified": commit.date,
                "createdAt": commit.date,
                "tags": [], "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            })  # fmt: skip
            return True
        if method == "GET" and action == "refs":
            repo = self._visible(h, repo_type, repo_id)
            if repo is not None:
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()]
                h._json(200, {"branches": branches, "converts": [], "tags": []})
            return True
        if action not in ("branch", "preupload", "commit", "tree", "paths-info") or len(parts) < 2:
            return False
        repo = self._visible(h, repo_type, repo_id)
        if repo is None:
            return True
        ref = unquote(parts[1])
        if method == "POST" and action == "branch":
            if not h._authorized:
                h._error(401, "Invalid credentials in Authorization header")
                return True
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            with self._lock:
                if ref in repo.branches:
                    h._error(409, f"Branch {ref} already exists")
                    return True
                commit = repo.resolve(start)
                if commit is None:
                    h._error(404, f"Invalid starting point {start}", "RevisionNotFound")
                    return True
                repo.branches[ref] = commit.sha
            h._json(200, {})
            return True
        commit = repo.resolve(ref)
        if commit is None:
            h._error(404, f"Invalid rev id: {ref}", "RevisionNotFound")
            return True
        if method == "POST" and action == "preupload":
            if not h._authorized:
                h._error(401, "Invalid credentials in Authorization header")
                return True
            files = json.loads(body or b"{}").get("files", [])
            h._json(200, {"files": [
                {"path": f["path"], "uploadMode": "lfs" if is_lfs(f["path"], f.get("size", 0)) else "regular",
                 "shouldIgnore": False,
                 "oid": self._oid(f["path"], commit.files[f["path"]]) if f["path"] in commit.files else None}
                for f in files
            ]})  # fmt: skip
            return True
        if method == "POST" and action == "commit":
            self._apply_commit(h, repo, ref, body)
            return True
        if method == "GET" and action == "tree":
            sub = unquote(parts[2]) if len(parts) > 2 else ""
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            if sub and self._entry(commit, sub) is None:
                h._error(404, f"{sub} does not exist on {ref}", "EntryNotFound")
                return True
            h._json(200, self._tree(commit, sub, recursive))
            return True
        if method == "POST" and action == "paths-info":
            content_type = h.headers.get("Content-Type", "")
            if "json" in content_type:
                paths = json.loads(body or b"{}").get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            entries = [e for p in paths if (e := self._entry(commit, p.strip("/"))) is not None]
            h._json(200, entries)
            return True
        return False

    def _tree(self, commit: Commit, sub: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        seen: dict[str, dict[str, Any]] = {}
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = prefix + "/".join(parts[:depth])
                if (recursive or depth == 1) and folder not in seen:
                    seen[folder] = self._entry(commit, folder)  # type: ignore[assignment]
            if recursive or len(parts) == 1:
                seen[path] = self._entry(commit, path)  # type: ignore[assignment]
        return list(seen.values())

    def _apply_commit(self, h: _Handler, repo: Repo, branch: str, body: bytes) -> None:
        if not h._authorized:
            return h._error(401, "Invalid credentials in Authorization header")
        if branch not in repo.branches:
            return h._error(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return h._error(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        with self._lock:
            head = repo.branches[branch]
            if header.get("parentCommit") and header["parentCommit"] != head:
                return h._error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[head].files)
            for item in lines[1:]:
                key, value = item["key"], item["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        return h._error(400, f"Unsupported encoding {value.get('encoding')}")
                    files[value["path"]] = self._put(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    blob = self.lfs_objects.get(value.get("oid", ""))
                    if blob is None or value.get("algo", "sha256") != "sha256":
                        return h._error(400, f"LFS object of {value['path']} was never uploaded")
                    files[value["path"]] = blob
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        return h._error(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(folder)}
                else:
                    return h._error(400, f"Unsupported commit operation {key!r}")
            commit = self._commit(repo, branch, files, header.get("summary", ""))
        return h._json(200, {"commitUrl": f"{self._url(repo)}/commit/{commit.sha}", "commitOid": commit.sha,
                             "success": True, "pullRequestUrl": None})  # fmt: skip

    def _lfs_batch(self, h: _Handler, payload: dict[str, Any]) -> None:
        if not h._authorized:
            return h._error(401, "Invalid credentials in Authorization header")
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            return h._error(400, "This fake hub only takes basic LFS uploads")
        objects = []
        for obj in payload.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs_objects:  # already stored: no actions, the client skips the upload
                href = f"{self.endpoint}/_lfs/{obj['oid']}"
                item["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(item)
        return h._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                       {"Content-Type": "application/vnd.git-lfs+json"})  # fmt: skip

    def _lfs_put(self, h: _Handler, oid: str, data: bytes) -> None:
        with self._lock:
            self.received.append(data)
        if hashlib.sha256(data).hexdigest() != oid:
            return h._error(400, "sha256 of the uploaded object does not match its oid")
        with self._lock:
            self.lfs_objects[oid] = self._put(data)
        return h._json(200, {})

    def _resolve(self, h: _Handler, method: str, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._visible(h, repo_type, repo_id)
        if repo is None:
            return None
        commit = repo.resolve(rev)
        if commit is None:
            return h._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if path not in commit.files:
            return h._error(404, f"Entry not found: {path}", "EntryNotFound")
        blob = commit.files[path]
        data = self._blob(blob).read_bytes()
        etag = self._sha256[blob] if is_lfs(path, len(data)) else blob
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
        }
        status = 200
        if (rng := h.headers.get("Range")) and (m := re.match(r"bytes=(\d+)-(\d*)$", rng.strip())):
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                return h._send(416, b"", headers)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        return h._send(status, data, headers)


try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_hub(tmp_path) -> Iterator[FakeHub]:
        """A fresh fake Hub per test, storing under ``tmp_path/hub``."""
        with FakeHub(tmp_path / "hub") as hub:
            yield hub
