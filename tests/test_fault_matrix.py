"""The fault matrix (issue 15, "Tests and figures"): `ftcot teach` against the loopback OpenAI server while it injects
one fault type into a share of the requests, its rows compared with a clean run's.

Each scenario teaches the first ``LIMIT`` coin_flip questions with D = ``DEGREE`` (so ``n`` > 1 requests), a server
that answers every question correctly (``text_for``: a rationale, then the gold answer) and ``--keep correct``:
the clean run keeps every sample, so a row that goes missing or a reply that should not be kept is visible.

* transient faults hit the *first* attempt of ``RATE`` of the requests: the retries absorb them, `ftcot teach`
  exits 0 and the rows equal the clean run's;
* persistent faults hit *every* attempt of those requests until the server heals: the first run exits 3 (the
  documented "some requests failed" status), the re-run (the same command, the server healed) exits 0, sends only
  what had failed and ends with the clean run's rows;
* content faults (``finish_reason: length``, empty text) are replies the server means: they are not retried, and
  no sample whose rationale or answer was cut or empty may be kept; every other row equals the clean run's;
* unusable faults (issue 31, item 3: empty, null, reasoning-only replies of a server failing for a while) are kept out
  like content faults, then the same command re-run against the healed server asks them again (``--retry_unusable``
  is the default) and ends with the clean run's rows, its yield report counting the samples asked again.

Rows lost = clean rows missing at the end that no content fault explains. Every scenario's base URL carries a
password and an API key (``http://ftcot:<password>@host/v1?api-key=<key>``, the key also in ``$OPENAI_API_KEY``);
every file it writes, and all it prints or logs (INFO and up), is scanned for both. ``bench/fault_matrix.py``
runs the same scenarios (no pytest needed) and prints the table of the closing note.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ftcot_hf.cli import main
from ftcot_hf.tasks.prompts import ANSWER_PHRASE
from ftcot_hf.teach import EXIT_INCOMPLETE
from tests.doubles import openai_teach_argv
from tests.fake_openai_server import Directive, FakeOpenAIServer
from tests.test_bad_inputs import log_streams_to

SECRET = "sk-fault-matrix-DO-NOT-LEAK-5c1e"
"""The API key: in ``$OPENAI_API_KEY`` and in the base URL's query string."""
URL_PASSWORD = "pw-fault-matrix-DO-NOT-LEAK-88d0"
LIMIT, DEGREE, RATE = 20, 2, 0.25
HANG_TIMEOUT = 1.0
"""The client timeout of the hang scenarios (the others keep a generous one: on a loaded 2-core machine a healthy
reply can take longer than a short timeout, and the scenario would test the machine instead)."""
TEACHER_KWARGS = {"max_retries": 2, "backoff_base": 0.001, "backoff_max": 0.005, "timeout": 60.0}
"""Three attempts per request, backoffs too small to notice."""
RETRY_AFTER = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    directives: tuple[tuple[Any, ...], ...]
    """What a hit request gets (several: rotated over the hit requests, a mixed storm)."""
    kind: str = "transient"
    """transient (first attempt only), persistent (every attempt until healed), content (a reply to keep out) or
    unusable (a reply to keep out, then asked again by the re-run against the healed server)."""

    def directive(self, key: str) -> tuple[Any, ...]:
        return self.directives[zlib.crc32(key.encode()) % len(self.directives)]


TRANSIENT_FAULTS = {
    "HTTP 503": ("503",),
    "HTTP 500": ("500",),
    f"HTTP 429, Retry-After {RETRY_AFTER}": ("429", RETRY_AFTER),
    "hang past the client timeout": ("timeout", 4 * HANG_TIMEOUT),
    "connection reset": ("drop",),
    "malformed JSON body": ("malformed",),
    "one choice fewer than n": ("few_choices",),
    "no choices": ("empty_choices",),
}
SCENARIOS: tuple[Scenario, ...] = (
    *(Scenario(name, (d,)) for name, d in TRANSIENT_FAULTS.items()),
    Scenario("all of the above, mixed", tuple(TRANSIENT_FAULTS.values())),
    *(Scenario(f"{name}, every retry", (d,), "persistent") for name, d in TRANSIENT_FAULTS.items()),
    Scenario("finish_reason length", (("length",),), "content"),
    Scenario("empty content", (("empty_content",),), "content"),
    Scenario("empty content, re-run healed", (("empty_content",),), "unusable"),
    Scenario("null content, re-run healed", (("null_content",),), "unusable"),
    Scenario("reasoning only, re-run healed", (("reasoning", "reasoning_content", ""),), "unusable"),
    Scenario("empty, null and reasoning only, mixed, re-run healed",
             (("empty_content",), ("null_content",), ("reasoning", "reasoning_content", None)), "unusable"),
)


def _key(body: dict[str, Any]) -> str:
    """A request's identity: the same for each of its attempts and for the re-run's."""
    return json.dumps(body, sort_keys=True)


def _hit(key: str) -> bool:
    return zlib.crc32(key.encode()) % 1000 < RATE * 1000


def question_of(prompt: str) -> str:
    return prompt.split("Q: ", 1)[1].split("\nA:", 1)[0]


def text_for(gold_of: dict[str, str]):
    """Completion text of the server: a rationale naming its question and sample, then (stage 2) the gold answer."""

    def text(prompt: str, index: int) -> str:
        question = question_of(prompt)
        if ANSWER_PHRASE in prompt:
            return f" {gold_of[question]}."
        return f" Question {zlib.crc32(question.encode()) % 99991} thought number {index} ends here."

    return text


class FaultPlan:
    """The server's ``fault_for``: which requests get which fault (called under the server's lock)."""

    def __init__(self, scenario: Scenario | None):
        self.scenario, self.healed = scenario, False
        self.attempts: dict[str, int] = {}
        self.hit: dict[str, tuple[Any, ...]] = {}

    def __call__(self, body: dict[str, Any]) -> Directive:
        key = _key(body)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.scenario is None or self.healed or not _hit(key):
            return None
        if self.scenario.kind != "persistent" and self.attempts[key] > 1:
            return None
        self.hit[key] = self.scenario.directive(key)
        return self.hit[key]


@contextlib.contextmanager
def _captured(sink: list[str]) -> Iterator[None]:
    """stdout, stderr and every log record (INFO and up, as `ftcot -v` shows them) into ``sink``."""
    out, err = io.StringIO(), io.StringIO()
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    root, handler = logging.getLogger(), Handler()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), log_streams_to(err):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        sink += [out.getvalue(), err.getvalue(), *records]


@contextlib.contextmanager
def api_key(value: str = SECRET) -> Iterator[None]:
    before = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ["OPENAI_API_KEY"]
        else:
            os.environ["OPENAI_API_KEY"] = before


def teach_argv(base_url: str, folder: Path, mirror: Path, out: str = "out", timeout: float | None = None) -> list[str]:
    kwargs = TEACHER_KWARGS if timeout is None else {**TEACHER_KWARGS, "timeout": timeout}
    return openai_teach_argv(base_url, folder / out, folder / "teacher.sqlite", mirror, "--degree", str(DEGREE),
                             "--keep", "correct", "--teacher_kwargs", json.dumps(kwargs), limit=LIMIT)  # fmt: skip


def secret_url(base_url: str) -> str:
    """``base_url`` with a password (sent as Basic auth) and a key in its query string (sent as a parameter, as
    Azure-style gateways take it): both must be used, and neither written, printed or logged."""
    return base_url.replace("http://", f"http://ftcot:{URL_PASSWORD}@") + f"?api-key={SECRET}"


def secrets_sent(request: Any) -> bool:
    basic = "Basic " + base64.b64encode(f"ftcot:{URL_PASSWORD}".encode()).decode()
    return request.authorization == basic and f"api-key={SECRET}" in request.path


def read_rows(out: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """The saved train rows by (question, sample), checked against yield_report.json's ``kept`` count."""
    import pyarrow.parquet as pq

    [parquet] = (out / "coin_flip").glob("train-*.parquet")
    rows = pq.read_table(parquet).to_pylist()
    [report] = json.loads((out / "yield_report.json").read_text())["reports"]
    assert report["kept"] == len(rows), (report["kept"], len(rows))
    return {(r["sample_index"], r["completion_index"]): r for r in rows}


def secrets_in(folder: Path, texts: list[str]) -> list[str]:
    """Where the API key or the URL password appears: files under ``folder`` (any bytes), then printed/logged text."""
    needles = (SECRET.encode(), URL_PASSWORD.encode())
    found = [str(p) for p in sorted(folder.rglob("*")) if p.is_file() and any(n in p.read_bytes() for n in needles)]
    return found + [f"output: {t[:80]!r}" for t in texts if SECRET in t or URL_PASSWORD in t]


@dataclass
class Outcome:
    scenario: str
    kind: str
    exit_codes: list[int] = field(default_factory=list)
    faulted: int = 0
    """Requests that got the fault (distinct requests, not attempts)."""
    rows_lost: int = 0
    bad_rows_kept: int = 0
    secrets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.problems and not self.secrets


@dataclass
class Fixture:
    """What every scenario needs: the mirror, the questions' gold answers and sample indices, the clean rows."""

    mirror: Path
    gold_of: dict[str, str]
    index_of: dict[str, int]
    clean: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


def prepare(mirror: Path, root: Path) -> Fixture:
    """Load the questions and teach them once on a healthy server (the rows every scenario is compared with)."""
    from ftcot_hf.tasks import resolve_task

    train = resolve_task("coin_flip").load(data_dir=str(mirror))["train"].select(range(LIMIT))
    fx = Fixture(mirror, dict(zip(train["question"], train["answer"], strict=True)),
                 dict(zip(train["question"], train["sample_index"], strict=True)))  # fmt: skip
    outcome = run_scenario(None, root / "clean", fx)
    assert outcome.survived and outcome.exit_codes == [0], outcome
    fx.clean = read_rows(root / "clean" / "out")
    assert len(fx.clean) == LIMIT * DEGREE, "the clean run must keep every sample"
    return fx


def _dropped_by(fx: Fixture, hit: dict[str, tuple[Any, ...]]) -> set[tuple[int, int]]:
    """The samples a content fault spoils: both samples of a question whose rationale request was hit, one sample
    (named by its rationale text) when its answer request was."""
    spoiled: set[tuple[int, int]] = set()
    for key in hit:
        prompt = json.loads(key)["prompt"]
        index = fx.index_of[question_of(prompt)]
        if ANSWER_PHRASE in prompt:
            spoiled.add((index, int(prompt.split(" thought number ")[1].split()[0]) if " thought number " in prompt
                         else -1))  # fmt: skip
        else:
            spoiled |= {(index, j) for j in range(DEGREE)}
    return spoiled


def run_scenario(scenario: Scenario | None, folder: Path, fx: Fixture, extra: tuple[str, ...] = ()) -> Outcome:
    """Teach under ``scenario`` (None: a healthy server) into ``folder``, re-run as documented, judge the rows
    (``extra``: more flags for both runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = Outcome(scenario.name if scenario else "clean", scenario.kind if scenario else "clean")
    plan, texts = FaultPlan(scenario), []
    with api_key(), FakeOpenAIServer(fault_for=plan, text_for=text_for(fx.gold_of)) as server:
        hangs = scenario is not None and any(d[0] == "timeout" for d in scenario.directives)
        argv = teach_argv(secret_url(server.base_url), folder, fx.mirror, timeout=HANG_TIMEOUT if hangs else None)
        argv += list(extra)
        with _captured(texts):
            result.exit_codes.append(main(argv))
        first = server.requests
        unusable = result.kind == "unusable"
        if result.exit_codes[0] == EXIT_INCOMPLETE or unusable:  # the documented answer: heal, then the same command
            plan.healed = True
            with _captured(texts):
                result.exit_codes.append(main(argv))
        resent = server.requests[len(first) :]
        if not all(secrets_sent(r) for r in server.requests):
            result.problems.append("the URL's password and key were not sent (the secret scan would prove nothing)")
    result.faulted, result.secrets = len(plan.hit), secrets_in(folder, texts)
    problems = result.problems
    expected = [EXIT_INCOMPLETE, 0] if result.kind == "persistent" else [0, 0] if result.kind == "unusable" else [0]
    if result.exit_codes != expected:
        said = [t for text in texts for t in text.splitlines() if "ftcot: error" in t]
        problems.append(f"exit codes {result.exit_codes}, expected {expected} ({said[-1][:300] if said else ''})")
    if scenario is not None and not plan.hit:
        problems.append("no request was hit: the scenario tested nothing")
    if any("Traceback" in t for t in texts):
        problems.append("a traceback was printed")
    if result.kind == "unusable":
        problems += reasked_problems(folder, first, resent, plan.hit)
    if result.kind in ("persistent", "unusable"):
        # (A failed request may come back as a smaller one: a reply short of choices keeps what it had.)
        again = {_key(r.body) for r in resent if r.body}
        ok_before = {_key(r.body) for r in first if r.body} - set(plan.hit)
        if again & ok_before:
            problems.append(f"the re-run re-sent {len(again & ok_before)} request(s) that had succeeded")
    if scenario is not None and retry_after_of(scenario) is not None:
        problems += retry_after_problems(first, retry_after_of(scenario) or 0)
    if not (folder / "out" / "yield_report.json").is_file():
        problems.append("nothing was saved")
        result.rows_lost = len(fx.clean)
        return result
    rows = read_rows(folder / "out")
    if scenario is None:  # the clean run itself: only its rows' own soundness
        result.bad_rows_kept = sum(not _clean_row(r) for r in rows.values())
        return result
    spoiled = _dropped_by(fx, plan.hit) if result.kind == "content" else set()
    wanted = set(fx.clean) - spoiled
    result.rows_lost = len(wanted - set(rows))
    garbage = [k for k, r in rows.items() if k in spoiled or not _clean_row(r)]
    changed = [k for k, r in rows.items() if k in fx.clean and k not in garbage and not same_row(r, fx.clean[k])]
    result.bad_rows_kept = len(garbage) + len(changed) + len(set(rows) - set(fx.clean))
    if result.rows_lost:
        problems.append(f"{result.rows_lost} row(s) lost")
    if result.bad_rows_kept:
        problems.append(f"{len(garbage)} cut/empty row(s) kept, {len(changed)} row(s) differ from the clean run")
    return result


def reasked_problems(folder: Path, first: list, resent: list, hit: dict[str, tuple[Any, ...]]) -> list[str]:
    """The re-run asked again every unusable reply (each hit request, its samples counted in the yield report)."""
    asked_again = {_key(r.body) for r in resent if r.body} & set(hit)
    problems = [] if asked_again == set(hit) else [f"the re-run asked again {len(asked_again)} of the {len(hit)} "
                                                   "unusable replies"]  # fmt: skip
    samples = sum(int(json.loads(k).get("n") or 1) for k in hit)
    report = folder / "out" / "yield_report.json"
    counted = json.loads(report.read_text())["reports"][0].get("reasked_unusable") if report.is_file() else None
    if counted != samples:
        problems.append(f"the yield report counts {counted} samples asked again, not {samples}")
    return problems


def same_row(row: dict[str, Any], clean: dict[str, Any]) -> bool:
    """Equal to the clean run's row; the rationale need only be one the server wrote for the same question: a reply
    with too few choices is topped up by asking for the missing samples alone, which the server numbers from 0 (a
    new sample, as any sampling server's would be)."""
    ours, theirs = ({k: v for k, v in r.items() if k != "rationale"} for r in (row, clean))
    return ours == theirs and row["rationale"].split(" thought ")[0] == clean["rationale"].split(" thought ")[0]


def _clean_row(row: dict[str, Any]) -> bool:
    return (row["finish_reason"] == row["answer_finish_reason"] == "stop" and bool(row["rationale"].strip())
            and bool(row["teacher_answer"].strip()))  # fmt: skip


def retry_after_of(scenario: Scenario) -> float | None:
    values = [float(d[1]) for d in scenario.directives if d[0] == "429" and len(d) > 1 and d[1] is not None]
    return min(values) if values else None


def retry_after_problems(requests: list, seconds: float) -> list[str]:
    """Each request answered 429 with Retry-After was not re-sent sooner than asked."""
    seen: dict[str, list] = {}
    for r in requests:
        if r.body:
            seen.setdefault(_key(r.body), []).append(r)
    early = [
        b.time - a.time
        for attempts in seen.values()
        for a, b in zip(attempts, attempts[1:], strict=False)
        if a.fault and a.fault[0] == "429" and b.time - a.time < seconds
    ]
    if not early:
        return []
    return [f"{len(early)} retry(ies) sooner than Retry-After {seconds:g} s (first after {early[0]:.2f} s)"]


def credentials_from_cache(folder: Path, fx: Fixture) -> Outcome:
    """Teach healthy, then the same command with ``user:password@`` in ``--base_url``: served wholly from the cache
    (the case where the password used to reach yield_report.json), no request sent, rows equal the clean run's."""
    result = Outcome("user:password@ in --base_url, served from the cache", "secrets")
    folder.mkdir(parents=True, exist_ok=True)
    texts: list[str] = []
    with api_key(), FakeOpenAIServer(text_for=text_for(fx.gold_of)) as server:
        with _captured(texts):
            result.exit_codes.append(main(teach_argv(server.base_url, folder, fx.mirror, out="plain")))
            sent = len(server.requests)
            url = server.base_url.replace("http://", f"http://ftcot:{URL_PASSWORD}@")
            result.exit_codes.append(main(teach_argv(url, folder, fx.mirror)))
        if len(server.requests) != sent:
            result.problems.append(f"{len(server.requests) - sent} request(s) sent although all were cached")
    result.secrets = secrets_in(folder, texts)
    if result.exit_codes != [0, 0]:
        result.problems.append(f"exit codes {result.exit_codes}, expected [0, 0]")
    elif read_rows(folder / "out") != fx.clean:
        result.problems.append("rows differ from the clean run")
    return result


# -- the tests -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fx(mirror, tmp_path_factory) -> Fixture:
    return prepare(mirror, tmp_path_factory.mktemp("fault_matrix"))


KNOWN: dict[str, str] = {}
"""Scenarios that fail today (strict xfail: they flip when fixed), by the file that owns the fix."""


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=KNOWN[s.name])) if s.name in KNOWN else s
     for s in SCENARIOS],
    ids=[s.name for s in SCENARIOS],
)  # fmt: skip
def test_fault_scenario_loses_no_row_keeps_no_bad_row_and_leaks_nothing(scenario, fx, tmp_path):
    outcome = run_scenario(scenario, tmp_path, fx)
    assert outcome.survived, (outcome.problems, outcome.secrets)
    assert outcome.faulted > 0 and outcome.rows_lost == 0 and outcome.bad_rows_kept == 0


def test_credentials_in_base_url_are_not_written_when_the_run_is_served_from_the_cache(fx, tmp_path):
    outcome = credentials_from_cache(tmp_path, fx)
    assert outcome.survived, (outcome.problems, outcome.secrets)


def test_unusable_replies_are_replayed_with_retry_unusable_false(fx, tmp_path):
    """A deliberate replay keeps what the cache holds: the re-run sends nothing and the spoiled rows stay out."""
    scenario = Scenario("empty content, replayed", (("empty_content",),), "unusable")
    outcome = run_scenario(scenario, tmp_path, fx, ("--retry_unusable", "false"))
    assert outcome.exit_codes == [0, 0] and outcome.rows_lost > 0 and not outcome.secrets
    assert any("asked again 0 of the" in p for p in outcome.problems), outcome.problems


def test_the_matrix_is_what_the_issue_asks_for():
    kinds = {s.kind for s in SCENARIOS}
    faults = {d[0] for s in SCENARIOS for d in s.directives}
    assert kinds == {"transient", "persistent", "content", "unusable"}
    assert {"503", "429", "timeout", "drop", "malformed", "few_choices", "empty_choices", "length",
            "empty_content", "null_content", "reasoning"} <= faults  # fmt: skip


def test_the_secret_scan_finds_the_key_in_any_file_and_in_output(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "blob.bin").write_bytes(b"\x00\x01" + URL_PASSWORD.encode() + b"\xff")
    (tmp_path / "clean.txt").write_text("nothing here")
    assert secrets_in(tmp_path, ["fine", f"error: {SECRET}"]) == [
        str(tmp_path / "deep" / "er" / "blob.bin"),
        f"output: 'error: {SECRET}'",
    ]
