"""Getting the raw files: mirror, real HTTP download through datasets' download manager, and every bad input."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from ftcot_hf import (
    ChecksumMismatchError,
    MissingSourceError,
    SourceFormatError,
    UnknownTaskError,
    get_task,
    load_task,
)
from ftcot_hf.tasks.sources import read_json, read_jsonl

COIN = get_task("coin_flip").source.sources["data"]


def _mini_mirror(mirror: Path, dest: Path, *sources) -> Path:
    for source in sources:
        target = dest / source.mirror_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / source.mirror_path, target)
    return dest


def _prepared_dirs(cache: Path) -> list[Path]:
    return [p.parent for p in cache.rglob("dataset_info.json")]


def test_unknown_task_lists_valid_names_and_suggests_close_match():
    with pytest.raises(UnknownTaskError) as e:
        load_task("coin_fip")
    message = str(e.value)
    assert "Did you mean 'coin_flip'?" in message
    for name in ("single_eq", "strategy_qa", "tracking_shuffled_objects"):
        assert name in message


def test_unknown_split_variant_lists_valid_variants():
    with pytest.raises(UnknownTaskError, match="template.*8shot"):
        load_task("multiarith", "templte")
    with pytest.raises(UnknownTaskError, match="no split variant 'template'"):
        load_task("coin_flip", "template")


def test_mirror_missing_file_names_path_and_public_url(tmp_path):
    with pytest.raises(MissingSourceError) as e:
        load_task("coin_flip", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    message = str(e.value)
    assert COIN.mirror_path in message
    assert COIN.url in message
    assert COIN.url == (
        "https://raw.githubusercontent.com/kojima-takeshi188/zero_shot_cot/"
        "5ef330fcdeec0cd26aee27943504f91f8ec1c33c/dataset/coin_flip/coin_flip.json"
    )


def test_checksum_mismatch_names_file_hashes_and_fix_and_leaves_no_cache(mirror, tmp_path):
    bad = _mini_mirror(mirror, tmp_path / "mirror", COIN)
    path = bad / COIN.mirror_path
    path.write_bytes(path.read_bytes().replace(b"heads up", b"tails up", 1))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatchError) as e:
        load_task("coin_flip", data_dir=bad, cache_dir=cache)
    message = str(e.value)
    assert str(path) in message
    assert f"expected sha256 {COIN.sha256}" in message
    actual = message.split(", got ")[1][:64]
    assert len(actual) == 64 and actual != COIN.sha256
    assert "Fix:" in message and COIN.url in message
    assert _prepared_dirs(cache) == []  # nothing half-written
    # Repairing the mirror is enough: the next build succeeds in the same cache.
    shutil.copyfile(mirror / COIN.mirror_path, path)
    assert load_task("coin_flip", data_dir=bad, cache_dir=cache)["test"].num_rows == 150


def test_malformed_json_line_names_file_and_line(mirror, tmp_path):
    gsm = get_task("gsm8k").source.sources
    bad = _mini_mirror(mirror, tmp_path / "mirror", gsm["train"], gsm["test"])
    path = bad / gsm["test"].mirror_path
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = lines[6][:40] + "\n"
    path.write_text("".join(lines))
    # With checksums on, the edited file is caught first, as it should be.
    with pytest.raises(ChecksumMismatchError):
        load_task("gsm8k", data_dir=bad, cache_dir=tmp_path / "c1")
    with pytest.raises(SourceFormatError) as e:
        load_task("gsm8k", data_dir=bad, cache_dir=tmp_path / "c2", verify_checksums=False)
    assert f"{path}:7:" in str(e.value)
    assert _prepared_dirs(tmp_path / "c2") == []


def test_missing_field_names_file_record_and_field(mirror, tmp_path):
    bad = _mini_mirror(mirror, tmp_path / "mirror", COIN)
    path = bad / COIN.mirror_path
    path.write_text(path.read_text().replace('"answer"', '"anser"', 1))
    with pytest.raises(SourceFormatError, match=r"example 0 has no field 'answer'"):
        load_task("coin_flip", data_dir=bad, cache_dir=tmp_path / "c", verify_checksums=False)


def test_readers_report_line_numbers(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(SourceFormatError, match=r"x.jsonl:3: malformed JSON line"):
        list(read_jsonl(p))
    q = tmp_path / "x.json"
    q.write_text('[\n  {"a": 1},\n  {"a": }\n]')
    with pytest.raises(SourceFormatError, match=r"x.json:3:"):
        read_json(q)


class _RawGitHub(http.server.BaseHTTPRequestHandler):
    """Serves /{owner}/{repo}/{commit}/{path} from a mirror laid out {owner}__{repo}/{path}."""

    root: Path
    requests: list[str]
    tamper: bool = False

    def _body(self) -> bytes | None:
        owner, repo, _commit, rest = self.path.lstrip("/").split("/", 3)
        file = type(self).root / f"{owner}__{repo}" / rest
        if not file.is_file():
            self.send_error(404)
            return None
        body = file.read_bytes()
        if type(self).tamper:
            body = body.replace(b"heads", b"tails", 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body

    def do_GET(self):  # noqa: N802
        type(self).requests.append(f"GET {self.path}")
        body = self._body()
        if body is not None:
            self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        type(self).requests.append(f"HEAD {self.path}")
        self._body()

    def log_message(self, *args):
        pass


@pytest.fixture
def raw_host(mirror, monkeypatch):
    handler = type("Handler", (_RawGitHub,), {"root": mirror, "requests": [], "tamper": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FTCOT_SOURCE_BASE_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("FTCOT_DATA_MIRROR", raising=False)
    yield handler
    server.shutdown()


def test_download_over_http_is_cached_and_verified(raw_host, tmp_path):
    cache = tmp_path / "cache"
    ds = load_task("coin_flip", cache_dir=cache)
    assert ds["train"].num_rows == 350
    gets = [r for r in raw_host.requests if r.startswith("GET")]
    assert gets == [f"GET /{COIN.repo}/{COIN.commit}/{COIN.path}"]
    assert COIN.path == "dataset/coin_flip/coin_flip.json"
    downloaded = [p for p in (cache / "downloads").iterdir() if p.is_file() and p.suffix not in (".json", ".lock")]
    assert len(downloaded) == 1
    # A second build reads the prepared dataset: no new request.
    raw_host.requests.clear()
    assert load_task("coin_flip", cache_dir=cache)["test"].num_rows == 150
    assert raw_host.requests == []


def test_tampered_download_is_rejected_and_evicted_from_cache(raw_host, tmp_path):
    cache = tmp_path / "cache"
    raw_host.tamper = True
    with pytest.raises(ChecksumMismatchError, match="cached download was removed"):
        load_task("coin_flip", cache_dir=cache)
    leftovers = [p for p in (cache / "downloads").iterdir() if p.is_file() and p.suffix not in (".lock",)]
    assert leftovers == []
    assert _prepared_dirs(cache) == []
    raw_host.tamper = False
    assert load_task("coin_flip", cache_dir=cache)["test"].num_rows == 150


def test_mirror_env_var_is_used_when_no_data_dir(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("FTCOT_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("FTCOT_SOURCE_BASE_URL", "http://127.0.0.1:9")  # would fail if a download were tried
    assert load_task("last_letter_concatenation", cache_dir=tmp_path)["train"].num_rows == 350
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").iterdir())
    assert os.environ["FTCOT_DATA_MIRROR"] == str(mirror)


def test_an_unreachable_host_without_a_mirror_is_one_line_naming_the_mirror_variable(tmp_path, monkeypatch, capsys):
    from ftcot_hf.cli import main

    monkeypatch.delenv("FTCOT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("FTCOT_SOURCE_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    assert main(["show", "coin_flip"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "FTCOT_DATA_MIRROR" in err and "127.0.0.1" in err
