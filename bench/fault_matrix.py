"""The fault matrix and the bad-input table of issue 15, as the table its closing note needs.

Runs, without pytest, the same scenarios the tests hold to account:

* network faults (``tests/test_fault_matrix.py``): `ftcot teach` against the loopback OpenAI server injecting each
  fault type into 25% of the requests (transient, on every retry, mixed; cut and empty replies), rows compared with
  a clean run after the documented re-run, and the files, output and logs scanned for the URL's password and key;
* process faults (``tests/test_crash_resume.py``, run through pytest in a child process because its scenarios are
  fixtures: kill -9, SIGINT, a real EFBIG from ``RLIMIT_FSIZE``, two concurrent writers); a passed test is a
  survived scenario, a (strict) xfail one that is not;
* bad command lines (``tests/test_bad_inputs.py``'s table): exit 2, one line on stderr naming the bad value;
* issue 31's classes: unusable replies (empty / null / reasoning-only, asked again by the re-run against the healed
  server: network scenarios of kind ``unusable``), secret routes (``tests/test_secrets.py``: a `ftcot run
  --push_to_hub` with a URL password, a query token, ``api_key`` and ``extra_body.user_token`` against a server
  echoing them in 401/500 bodies, every file, the cache, the Hub and both streams searched raw and encoded) and a
  damaged cache (``tests/test_cache_damage.py``: garbage, truncated, garbage pages, a directory, bad rows, check and
  repair), run through pytest in a child process as the process faults.

    FTCOT_DATA_MIRROR=/work/shared/data OMP_NUM_THREADS=1 python bench/fault_matrix.py [--no_process] [--json OUT]

Prints a Markdown table (scenarios survived x/y, bad inputs with a clear error x/y, rows lost, cut/empty rows
kept, secrets found) and, below it, every scenario or input that did not pass and why.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def mirror() -> Path:
    path = Path(os.environ.get("FTCOT_DATA_MIRROR") or REPO.parent / "shared" / "data")
    if not (path / "kojima-takeshi188__zero_shot_cot").is_dir():
        sys.exit(f"fault_matrix: no offline mirror at {path}: set FTCOT_DATA_MIRROR.")
    return path


def network_faults(data: Path, root: Path) -> list[dict]:
    from tests import test_fault_matrix as fm

    fx = fm.prepare(data, root / "clean")
    outcomes = [fm.run_scenario(s, root / f"s{i}", fx) for i, s in enumerate(fm.SCENARIOS)]
    outcomes.append(fm.credentials_from_cache(root / "credentials", fx))
    return [{"scenario": o.scenario, "kind": o.kind, "survived": o.survived, "exit_codes": o.exit_codes,
             "faulted_requests": o.faulted, "rows_lost": o.rows_lost, "bad_rows_kept": o.bad_rows_kept,
             "secrets": o.secrets, "problems": o.problems} for o in outcomes]  # fmt: skip


_OUTCOME = re.compile(
    r"^(PASSED|FAILED|XFAIL|XPASS|ERROR|SKIPPED) (tests/test_\w+\.py)(?:::(.+?\]|\S+))?(?: - (.*))?$"
)


def pytest_scenarios(test_file: str) -> list[dict]:
    """Each test of ``test_file`` as a scenario (run in a child process: their scenarios are fixtures)."""
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", test_file]
    proc = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    rows = []
    for line in proc.stdout.splitlines():
        m = _OUTCOME.match(line.strip())
        if m and m[1] != "SKIPPED":
            rows.append({"scenario": m[3] or m[2], "survived": m[1] == "PASSED", "outcome": m[1], "why": m[4] or ""})
    if not rows:
        rows.append({"scenario": test_file, "survived": False, "outcome": "no result",
                     "why": proc.stdout[-500:] + proc.stderr[-500:]})  # fmt: skip
    return rows


def process_faults() -> list[dict]:
    return pytest_scenarios("tests/test_crash_resume.py")


ISSUE_31 = {
    "secret routes (run, cache, Hub, streams; raw and encoded)": "tests/test_secrets.py",
    "damaged cache (garbage, truncated, pages, directory, bad rows, check/repair)": "tests/test_cache_damage.py",
}
"""Issue 31's classes run through pytest (item 3's, unusable replies, are network scenarios)."""


def bad_inputs(data: Path, root: Path) -> list[dict]:
    from tests import test_bad_inputs as bi
    from tests.tiny_models import make_gpt2

    student = make_gpt2(root / "student")
    rationales = bi.teach_rationales(root / "rationales", data)
    places = {"mirror": str(data), "student": str(student), "rationales": str(rationales)}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("HF_TOKEN", None)
    rows = []
    for i, case in enumerate(bi.CASES):
        tmp = root / f"case{i}"
        tmp.mkdir()
        bi.make_files(tmp, rationales)
        problem, seconds = bi.judge(case, {**places, "tmp": str(tmp)})
        rows.append({"input": case.id, "clear": problem is None, "problem": problem, "known": case.known,
                     "seconds": round(seconds, 2)})  # fmt: skip
    return rows


def table(
    network: list[dict], process: list[dict], inputs: list[dict], classes: dict[str, list[dict]] | None = None
) -> str:
    def ratio(rows: list[dict], key: str) -> str:
        return f"{sum(r[key] for r in rows)}/{len(rows)}"

    classes = classes or {}
    lines = ["| measure | value |", "|---|---|"]
    lines.append(
        f"| network fault scenarios survived (`ftcot teach` vs the loopback server) | {ratio(network, 'survived')} |"
    )
    unusable = [r for r in network if r["kind"] == "unusable"]
    if unusable:
        lines.append(f"| unusable replies (empty / null / reasoning-only) asked again on the re-run | "
                     f"{ratio(unusable, 'survived')} |")  # fmt: skip
    for name, rows in classes.items():
        lines.append(f"| {name} | {ratio(rows, 'survived')} |")
    if process:
        lines.append(f"| process fault scenarios survived (kill -9, SIGINT, disk full, concurrent) | "
                     f"{ratio(process, 'survived')} |")  # fmt: skip
        both = network + process
        lines.append(f"| all fault scenarios survived | {ratio(both, 'survived')} |")
    lines += [
        f"| bad inputs with a clear error (exit 2, one line naming the value) | {ratio(inputs, 'clear')} |",
        f"| rows lost (after the documented re-run) | {sum(r['rows_lost'] for r in network)} |",
        f"| cut/empty or altered rows kept | {sum(r['bad_rows_kept'] for r in network)} |",
        f"| secrets found in files, output or logs | {sum(len(r['secrets']) for r in network)} |",
    ]
    lines.append("\nNot survived / not clear:")
    for r in network:
        if not r["survived"]:
            lines.append(f"- network: {r['scenario']}: {'; '.join(r['problems'] + r['secrets'])}")
    for r in process:
        if not r["survived"]:
            lines.append(f"- process: {r['scenario']} ({r['outcome']}): {r['why']}")
    for r in inputs:
        if not r["clear"]:
            lines.append(f"- input: {r['input']}: {r['problem']}")
    for name, rows in classes.items():
        for r in rows:
            if not r["survived"]:
                lines.append(f"- {name}: {r['scenario']} ({r['outcome']}): {r['why']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no_process", action="store_true", help="skip the process faults (a few minutes)")
    parser.add_argument("--json", default=None, help="also write every row here")
    args = parser.parse_args(argv)
    data = mirror()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ftcot-fault-matrix-") as tmp:
        root = Path(tmp)
        network = network_faults(data, root / "network")
        inputs = bad_inputs(data, root / "inputs")
    process = [] if args.no_process else process_faults()
    classes = {name: pytest_scenarios(test_file) for name, test_file in ISSUE_31.items()}
    print(table(network, process, inputs, classes))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"network": network, "process": process, "inputs": inputs,
                                               "issue_31": classes}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
