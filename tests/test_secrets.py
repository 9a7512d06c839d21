"""Issue 31, item 1: no secret leaves the process, by any route, in any encoding.

One `ftcot -v run --push_to_hub` whose teach section carries every secret route of the issue: a password in the
base URL (sent as ``Authorization: Basic base64(user:password)``), a token in its query string, ``api_key`` (the
bearer key of a second server of the fleet) and ``extra_body.user_token`` (sent in every body). The loopback server
answers the first attempt of some requests with HTTP 500, and a second run with HTTP 401, each echoing the
``Authorization`` header, the path with its query and the raw body. Then every file of the run folders, the cache
files, the fake Hub's stored blobs and every body it received, and both streams are searched for each secret, raw,
percent-encoded and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest
import yaml

from ftcot_hf.utils.scrub import REDACTED, is_secret_name, redact, register, scrub_text
from tests.conftest import REPO_ROOT
from tests.fake_hub_server import DEFAULT_USER, FakeHub
from tests.fake_openai_server import FakeOpenAIServer
from tests.tiny_models import make_gpt2

USER = "ftcot"
PASSWORD = "pw-S3kr/t+one~DO-NOT-LEAK"
QUERY_TOKEN = "qt-S3kr/t+two DO-NOT-LEAK"
API_KEY = "sk-S3krit-three-DO-NOT-LEAK"
USER_TOKEN = "ut-S3kr/t four-DO-NOT-LEAK"
SECRETS = {"url password": PASSWORD, "query token": QUERY_TOKEN, "api_key": API_KEY,
           "extra_body.user_token": USER_TOKEN}


def needles() -> dict[str, bytes]:
    """Each secret raw, percent-encoded (both ways), JSON-escaped and base64-encoded, and the Basic auth pair."""
    out: dict[str, bytes] = {}
    for route, secret in SECRETS.items():
        for how, form in (("raw", secret), ("percent", quote(secret, safe="")), ("percent+", quote_plus(secret)),
                          ("base64", base64.b64encode(secret.encode()).decode())):  # fmt: skip
            out[f"{route} ({how})"] = form.encode()
    out["url password (Basic auth base64)"] = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    return out


def leaks(blobs: dict[str, bytes]) -> list[str]:
    return [f"{where}: {name}" for where, blob in blobs.items() for name, n in needles().items() if n in blob]


def files_under(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for f in folders if f.exists() for p in sorted(f.rglob("*")) if p.is_file()}


def test_the_search_finds_every_form_of_every_secret():
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    found = leaks({"a": f"x {quote(USER_TOKEN, safe='')} y".encode(), "b": basic.encode(), "c": b"clean"})
    # ("ftcot:" is 6 bytes: the password's own base64 is inside the pair's)
    assert found == ["a: extra_body.user_token (percent)", "b: url password (base64)",
                     "b: url password (Basic auth base64)"]  # fmt: skip


class EchoFirstAttempt:
    """``fault_for``: the first attempt of about a third of the requests gets HTTP 500 echoing what was sent."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.echoed = 0

    def __call__(self, body: dict) -> tuple | None:
        key = json.dumps(body, sort_keys=True)
        if key in self.seen or zlib.crc32(key.encode()) % 3:
            self.seen.add(key)
            return None
        self.seen.add(key)
        self.echoed += 1
        return ("echo", 500)


def run_config(server: FakeOpenAIServer, student: Path, mirror: Path, out: Path) -> dict:
    netloc = f"{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}"
    return {
        "tasks": ["coin_flip"], "student": str(student), "data_dir": str(mirror), "output_dir": str(out),
        "cpu_threads": 1,
        "teach": {
            "teacher": "openai", "model": "fake-model", "keep": "all", "limit": 8, "cache_dir": f"{out}.sqlite",
            "base_url": [f"http://{netloc}/v1?token={quote_plus(QUERY_TOKEN)}", server.base_url],
            "teacher_kwargs": {"api_key": API_KEY, "extra_body": {"user_token": USER_TOKEN}, "max_retries": 3,
                               "backoff_base": 0.001, "backoff_max": 0.005},  # fmt: skip
        },
        "train": {"num_train_epochs": 1, "per_device_train_batch_size": 4},
        "eval": {"limit": 2, "max_new_tokens": 4, "batch_size": 2, "untrained": False},
        "hub": {"push_to_hub": True, "dataset_id": f"{DEFAULT_USER}/secret-rationales",
                "model_id": f"{DEFAULT_USER}/secret-{{task}}"},  # fmt: skip
    }


def test_no_secret_reaches_a_file_the_cache_the_hub_or_a_stream(tmp_path, mirror):
    student = make_gpt2(tmp_path / "student")
    plan = EchoFirstAttempt()
    streams: dict[str, bytes] = {}
    with FakeOpenAIServer(fault_for=plan) as server, FakeHub(tmp_path / "hub") as hub:
        env = hub.client_env(tmp_path / "hf_home") | {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
        env.pop("OPENAI_API_KEY", None)
        codes = []
        for name, fault in (("run", plan), ("rejected", lambda body: ("echo", 401))):
            server.fault_for = fault
            config = tmp_path / f"{name}.yaml"
            config.write_text(yaml.safe_dump(run_config(server, student, mirror, tmp_path / name)))
            proc = subprocess.run(
                [sys.executable, "-m", "ftcot_hf.cli", "-v", "run", "--config", str(config)],
                env=env, cwd=REPO_ROOT, capture_output=True, timeout=600,
            )  # fmt: skip
            codes.append(proc.returncode)
            streams |= {f"{name} stdout": proc.stdout, f"{name} stderr": proc.stderr}
        sent = server.requests
        blobs = files_under(tmp_path / "run", tmp_path / "rejected", tmp_path / "hub", tmp_path / "hf_home")
        blobs |= {p: tmp_path.joinpath(p).read_bytes() for p in os.listdir(tmp_path) if ".sqlite" in p}
        blobs |= {f"hub received #{i}": body for i, body in enumerate(hub.received)}
        pushed = sorted(hub.files("dataset", f"{DEFAULT_USER}/secret-rationales")) if codes[0] == 0 else []
    assert codes == [0, 2], streams["run stderr"][-3000:]
    # the secrets were used (else the search would prove nothing), and the server did echo them back
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert any(r.authorization == basic and parse_qs(urlsplit(r.path).query)["token"] == [QUERY_TOKEN] for r in sent)
    assert any(r.authorization == f"Bearer {API_KEY}" for r in sent)
    assert all(r.body["user_token"] == USER_TOKEN for r in sent if r.body)
    assert plan.echoed > 0 and "yield_report.json" in pushed
    assert b"HTTP 401" in streams["rejected stderr"] and b"Rejected request" in streams["rejected stderr"]
    assert (tmp_path / "run" / "run_config.yaml").is_file()
    assert (tmp_path / "run" / "report" / "summary.json").is_file()
    assert leaks(blobs | streams) == []
    written = yaml.safe_load((tmp_path / "run" / "run_config.yaml").read_text())
    assert written["teach"]["teacher_kwargs"] == {"api_key": REDACTED, "extra_body": {"user_token": REDACTED},
                                                  "max_retries": 3, "backoff_base": 0.001, "backoff_max": 0.005}


def test_redact_walks_nested_values_by_key_name_and_masks_urls():
    config = {"teacher_kwargs": {"extra_body": {"nested": [{"Authorization": "Bearer abcdefgh"}], "top_k": 5},
                                 "max_tokens": 9, "api_key_env": "MY_KEY"},
              "base_url": "https://u:p4ssw0rd@host/v1?key=abcd1234",
              "note": "see http://host/x?sig=zzzz9999 now"}  # fmt: skip
    out = redact(config)
    assert out["teacher_kwargs"] == {"extra_body": {"nested": [{"Authorization": REDACTED}], "top_k": 5},
                                     "max_tokens": 9, "api_key_env": "MY_KEY"}  # fmt: skip
    assert out["base_url"] == "https://host/v1" and out["note"] == "see http://host/x?sig=*** now"
    assert not is_secret_name("max_tokens") and is_secret_name("userToken") and is_secret_name("x-api-key")


def test_scrub_text_masks_registered_secrets_in_their_encoded_forms_and_in_log_records(caplog):
    secret = "s3cr/t value+x"
    register(secret)
    text = f"{secret} {quote(secret, safe='')} {quote_plus(secret)} {base64.b64encode(secret.encode()).decode()}"
    assert scrub_text(text) == "*** *** *** ***"
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("sent %s with Authorization: Basic Zm9vOmJhcg==", secret)
    assert caplog.records[-1].getMessage() == "sent *** with Authorization: Basic ***"


def test_a_redacted_value_read_back_from_a_written_config_is_refused(mirror):
    from ftcot_hf.errors import FtcotError
    from ftcot_hf.teach import TeachConfig
    from ftcot_hf.teachers import build_teacher

    config = TeachConfig(tasks=["coin_flip"], teacher="openai", model="m", base_url="http://127.0.0.1:9/v1",
                         teacher_kwargs={"api_key": REDACTED}, data_dir=str(mirror))  # fmt: skip
    with pytest.raises(FtcotError, match="give the secret again"):
        build_teacher(config)
