"""Bad command lines, typed as a user types them (issue 15, items 7 and 11, and the obvious ones for every command of
the README): each must exit 2 with ONE error line on stderr, no traceback, naming the bad value.

The cases are a plain table (``CASES``) and :func:`judge` a plain function, so ``bench/fault_matrix.py`` counts
"bad inputs with a clear error" from the same table without pytest. Each runs in-process (``ftcot_hf.cli.main``):
~80 subprocesses would cost minutes of imports. Placeholders in a command: ``{tmp}`` (a fresh folder holding the
files of :func:`make_files`), ``{mirror}`` (the offline data), ``{student}`` (a tiny GPT-2 folder, 512 positions),
``{rationales}`` (a small rationale dataset taught from the recorded teacher).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftcot_hf.cli import main


@dataclass(frozen=True)
class Case:
    id: str
    command: str
    """As typed after ``ftcot`` (placeholders formatted by :func:`argv`)."""
    needle: str
    """What the error line must contain: the bad value (or flag) the user has to change."""
    known: str = ""
    """Fails today: '<owner file>: <what>' (a strict xfail: it flips when fixed)."""


TEACH = "teach --data_dir {mirror} --cache_dir {tmp}/c.sqlite --output_dir {tmp}/out"
RUN = (
    "run --data_dir {mirror} --cache_dir {tmp}/c.sqlite --output_dir {tmp}/run --student {student} --limit_train 4 "
    "--limit_test 2 --eval_max_new_tokens 4 --eval_untrained false --cpu_threads 1"
)
"""Small, so that a bad value that is accepted costs seconds, not the default run's minutes."""
TRAIN = "train --data_dir {mirror} --output_dir {tmp}/s --student {student} --rationales {rationales} --task coin_flip"
EVAL = "eval --data_dir {mirror} --model {student} --output_dir {tmp}/e --task coin_flip --limit 2"
OPENAI = "--teacher openai --model m --tasks coin_flip --limit 2"
QA = "--question_column q --answer_column a --answer_type number --task_name qa"

CASES: tuple[Case, ...] = (
    # -- tasks, teachers, formats by name ---------------------------------------------------------------------------
    Case("teach unknown task", f"{TEACH} --tasks coin_flp", "coin_flp"),
    Case("teach unknown teacher", f"{TEACH} --teacher gpt-17", "gpt-17"),
    Case("run unknown task", f"{RUN} --tasks coin_flp", "coin_flp"),
    Case("run unknown format", f"{RUN} --format ft_cott", "ft_cott"),
    Case("run unknown teacher", f"{RUN} --teacher gpt-17", "gpt-17"),
    Case("train unknown format", f"{TRAIN} --format nope", "nope"),
    Case("train unknown task", f"{TRAIN.replace('coin_flip', 'coin_flp')}", "coin_flp"),
    Case("eval unknown task", f"{EVAL.replace('coin_flip', 'coin_flp')}", "coin_flp"),
    Case("eval unknown format", f"{EVAL} --format nope", "nope"),
    Case("eval unknown mode", f"{EVAL} --mode fuzzy", "fuzzy"),
    Case("show unknown task", "show coin_flp --data-dir {mirror}", "coin_flp"),
    Case("show unknown variant", "show coin_flip --variant weekly --data-dir {mirror}", "weekly"),
    Case("show 9999shot", "show coin_flip --variant 9999shot --data-dir {mirror}", "9999shot"),
    Case("show unknown split", "show coin_flip --split dev --data-dir {mirror}", "dev"),
    Case("decontaminate unknown task", "decontaminate --tasks coin_flp --data-dir {mirror}", "coin_flp"),
    Case("export-lm-eval unknown task", "export-lm-eval {tmp}/lm --tasks coin_flp", "coin_flp"),
    Case(
        "teach unknown answer type",
        f"{TEACH} --dataset {{tmp}}/qa.jsonl --question_column q --answer_column a --answer_type numbr --task_name qa",
        "numbr",
    ),
    Case("-v teach unknown task (the form --help shows)", f"-v {TEACH} --tasks coin_flp", "coin_flp"),
    Case("unknown command", "tach --tasks coin_flip", "tach"),
    Case("teach --tasks without a value", f"{TEACH} --tasks", "--tasks"),
    Case("teach unknown keep", f"{TEACH} --keep some", "some"),
    Case("teach unknown mode", f"{TEACH} --mode fuzzy", "fuzzy"),
    Case("teach unknown trigger", f"{TEACH} --trigger shout", "shout"),
    Case("teach unknown protocol", f"{TEACH} --protocol three_stage", "three_stage"),
    Case("teach unknown split", f"{TEACH} --split dev --limit 2", "dev"),
    Case("run unknown select_epoch", f"{RUN} --select_epoch best", "best"),
    # -- bad types ---------------------------------------------------------------------------------------------------
    Case("teach --limit abc", f"{TEACH} --limit abc", "abc"),
    Case("teach --degree x", f"{TEACH} --degree x", "x"),
    Case("teach --temperature hot", f"{TEACH} --temperature hot", "hot"),
    Case("teach --chat maybe", f"{TEACH} --chat maybe", "maybe"),
    Case("train --learning_rate fast", f"{TRAIN} --learning_rate fast", "fast"),
    Case("show -n many", "show coin_flip -n many --data-dir {mirror}", "many"),
    Case("teach unknown flag", f"{TEACH} --temprature 0.5", "--temprature"),  # (--degre would abbreviate --degree)
    Case("run unknown flag", f"{RUN} --epochs 3", "--epochs"),
    # -- numbers out of range ---------------------------------------------------------------------------------------
    Case("teach --limit 0", f"{TEACH} --limit 0", "--limit"),
    Case("teach --limit -5", f"{TEACH} --limit -5", "-5"),
    Case("teach --degree 0", f"{TEACH} --degree 0", "got 0"),
    Case("teach --degree 65", f"{TEACH} --degree 65", "65"),
    Case("teach --temperature nan", f"{TEACH} --temperature nan", "nan"),
    Case("teach --temperature -1", f"{TEACH} --temperature -1", "-1"),
    Case("teach --degree 4 --temperature 0", f"{TEACH} --degree 4 --temperature 0", "--temperature 0"),
    Case("teach --lock_timeout -1", f"{TEACH} --lock_timeout -1", "-1"),
    Case(
        "teach --max_concurrency 0",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 --max_concurrency 0",
        "max_concurrency",
    ),
    Case(
        "teach --max_rationale_tokens 0",
        f"{TEACH} --max_rationale_tokens 0",
        "max_rationale_tokens",
    ),
    Case(
        "teach --max_answer_tokens -1",
        f"{TEACH} --max_answer_tokens -1",
        "max_answer_tokens",
    ),
    Case("teach --price_input_per_mtok -1", f"{TEACH} --price_input_per_mtok -1", "price_input_per_mtok"),
    Case("train --num_train_epochs 0", f"{TRAIN} --num_train_epochs 0", "num_train_epochs"),
    Case("train --learning_rate -1", f"{TRAIN} --learning_rate -1", "learning_rate"),
    Case("train --max_length 0", f"{TRAIN} --max_length 0", "max_length"),
    # (--max_length 4096 on the 512-position student is no bad input: it is capped to 512 with one warning, which
    # issue 15 item 11 allows: "cap or refuse up front")
    Case(
        "train --per_device_train_batch_size 0",
        f"{TRAIN} --per_device_train_batch_size 0",
        "per_device_train_batch_size",
    ),
    Case("run --limit_train 0", f"{RUN} --limit_train 0", "limit_train"),
    Case("run --limit_test -1", f"{RUN} --limit_test -1", "limit_test"),
    Case("run --validation_size -1", f"{RUN} --validation_size -1", "validation_size"),
    Case("run --num_train_epochs 0", f"{RUN} --num_train_epochs 0", "num_train_epochs"),
    Case("run --sc -1", f"{RUN} --sc -1", "sc"),  # 0 is the default: no self-consistency
    Case("eval --batch_size 0", f"{EVAL} --batch_size 0", "batch_size"),
    Case("eval --max_new_tokens 0", f"{EVAL} --max_new_tokens 0", "max_new_tokens"),
    Case("eval --limit 0", f"{EVAL.replace('--limit 2', '--limit 0')}", "limit"),
    Case("show -n -1", "show coin_flip -n -1 --data-dir {mirror}", "-1"),
    Case("decontaminate --ngram 0", "decontaminate --tasks coin_flip --ngram 0 --data-dir {mirror}", "ngram"),
    # -- files -------------------------------------------------------------------------------------------------------
    Case("teach --config missing", "teach --config {tmp}/nope.yaml", "nope.yaml"),
    Case("teach --config bad YAML", "teach --config {tmp}/bad.yaml", "bad.yaml"),
    Case("run --config bad YAML", "run --config {tmp}/bad.yaml", "bad.yaml"),
    Case("train --config missing", "train --config {tmp}/nope.yaml", "nope.yaml"),
    Case("teach --config not a mapping", "teach --config {tmp}/list.yaml", "list.yaml"),
    Case("teach --config unknown key", "teach --config {tmp}/unknown_key.yaml", "degre"),
    Case(
        "teach --replay_file missing",
        f"{TEACH} --teacher replay --replay_file {{tmp}}/nope.jsonl --limit 2",
        "nope.jsonl",
    ),
    Case(
        "teach --replay_file not JSON",
        f"{TEACH} --teacher replay --replay_file {{tmp}}/bad.yaml --limit 2",
        "bad.yaml",
    ),
    Case("teach --output_dir is a file", f"{TEACH.replace('{tmp}/out', '{tmp}/notes.txt')} --limit 2", "notes.txt"),
    Case("teach --dataset missing", f"{TEACH} --dataset {{tmp}}/nope.jsonl {QA}", "nope.jsonl"),
    Case(
        "teach --dataset missing column",
        f"{TEACH} --dataset {{tmp}}/qa.jsonl --question_column question "
        "--answer_column a --answer_type number --task_name qa",
        "question",
    ),
    Case("teach --dataset bad gold answer", f"{TEACH} --dataset {{tmp}}/qa_bad.jsonl {QA} --test_size 0.2", "seven"),
    Case(
        "teach --dataset without --question_column",
        f"{TEACH} --dataset {{tmp}}/qa.jsonl --answer_column a --answer_type number --task_name qa",
        "question_column",
    ),
    Case(
        "teach --data_dir empty",
        "teach --data_dir {tmp}/empty --cache_dir {tmp}/c.sqlite --output_dir {tmp}/o",
        "empty",
    ),
    Case("run --student missing", f"{RUN.replace('{student}', '/nonexistent/student')}", "/nonexistent/student"),
    Case("run --output_dir under a file", f"{RUN.replace('{tmp}/run', '{tmp}/notes.txt/run')}", "notes.txt"),
    Case("train --rationales missing", f"{TRAIN.replace('{rationales}', '{tmp}/nope')}", "nope"),
    Case(
        "train --rationales 0-row Parquet",
        f"{TRAIN.replace('{rationales}', '{tmp}/zero_rows')}",
        "zero_rows",
    ),
    Case(
        "train --rationales Parquet schema differs",
        f"{TRAIN.replace('{rationales}', '{tmp}/bad_schema')}",
        "bad_schema",
    ),
    Case("train --rationales task not in it", f"{TRAIN.replace('coin_flip', 'multiarith')}", "multiarith"),
    Case("train --student missing", f"{TRAIN.replace('{student}', '/nonexistent/student')}", "/nonexistent/student"),
    Case("eval --model missing", f"{EVAL.replace('{student}', '/nonexistent/student')}", "/nonexistent/student"),
    Case("push --path missing", "push --what rationales --path {tmp}/nope --repo_id me/x", "nope"),
    Case("push unknown what", "push --what weights --path {rationales} --repo_id me/x", "weights"),
    Case(
        "decontaminate --rationales missing",
        "decontaminate --tasks coin_flip --rationales {tmp}/nope --data-dir {mirror}",
        "nope",
    ),
    # -- URLs, JSON, the Hub ----------------------------------------------------------------------------------------
    Case("teach --base_url not a url", f"{TEACH} {OPENAI} --base_url 'not a url'", "not a url"),
    Case("teach --base_url ftp scheme", f"{TEACH} {OPENAI} --base_url ftp://127.0.0.1/v1", "ftp://"),
    Case("teach openai without --base_url", f"{TEACH} {OPENAI}", "--base_url"),
    Case(
        "teach --teacher_kwargs not JSON",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 --teacher_kwargs '{{{{timeout: 3}}}}'",
        "teacher_kwargs",
    ),
    Case(
        "teach --teacher_kwargs a list",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 --teacher_kwargs '[1]'",
        "teacher_kwargs",
    ),
    Case(
        "teach --teacher_kwargs unknown option",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 "
        """--teacher_kwargs '{{"timeuot": 3}}'""",
        "timeuot",
    ),
    Case(
        "teach --teacher_kwargs api_key_env unset",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 "
        """--teacher_kwargs '{{"api_key_env": "FTCOT_NO_SUCH_KEY_VAR"}}'""",
        "FTCOT_NO_SUCH_KEY_VAR",
    ),
    Case("run --push_to_hub without repo ids", f"{RUN} --push_to_hub", "hub_dataset_id"),
    Case(
        "run --push_to_hub without a token",
        f"{RUN} --push_to_hub --hub_dataset_id me/r --hub_model_id me/s",
        "token",
    ),
    Case("push student without --task", "push --what student --path {student} --repo_id me/x", "task"),
    # -- issue 31: silent accepts, tracebacks, errors naming nothing, work before validation ------------------------
    Case("teach --resample_until -1", f"{TEACH} --limit 2 --resample_until -1", "--resample_until"),
    Case("teach --max_extra_samples -5", f"{TEACH} --limit 2 --max_extra_samples -5", "--max_extra_samples"),
    Case(
        "teach --resample_until without extra samples", f"{TEACH} --limit 2 --resample_until 2", "--max_extra_samples"
    ),  # fmt: skip
    Case("run --resample_until -1", f"{RUN} --resample_until -1", "--resample_until"),
    Case(
        "eval a teacher preset --format bogus",
        f"{EVAL.replace('{student}', 'text-davinci-002')} --format bogus",
        "bogus",
    ),  # fmt: skip
    Case(
        "teach --dataset one question, two gold answers",
        f"{TEACH} --dataset {{tmp}}/qa_twice.jsonl {QA} --test_size 0.2",
        "What is 1 plus 1?",
    ),  # fmt: skip
    Case(
        "teach --teacher_kwargs timeout not a number",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 " """--teacher_kwargs '{{"timeout": "abc"}}'""",
        "timeout must be a number",
    ),
    Case(
        "teach --teacher_kwargs max_retries NaN",
        f"{TEACH} {OPENAI} --base_url http://127.0.0.1:9/v1 " """--teacher_kwargs '{{"max_retries": NaN}}'""",
        "max_retries must be an integer",
    ),
    Case("teach --config tasks: 5", "teach --config {tmp}/tasks_5.yaml", "TeachConfig.tasks"),
    Case("run --config tasks: 5", "run --config {tmp}/tasks_5.yaml", "RunConfig.tasks"),
    Case("teach --config teacher_kwargs a list", "teach --config {tmp}/kwargs_list.yaml", "teacher_kwargs"),
    Case("teach --config binary", "teach --config {tmp}/binary.yaml", "binary.yaml"),
    Case("teach --dataset empty JSONL", f"{TEACH} --dataset {{tmp}}/empty.jsonl {QA}", "empty.jsonl"),
    Case("teach --dataset binary JSONL", f"{TEACH} --dataset {{tmp}}/binary.jsonl {QA}", "binary.jsonl:1"),
    Case("teach --dataset one broken JSONL line", f"{TEACH} --dataset {{tmp}}/broken.jsonl {QA}", "broken.jsonl:7"),
    Case("teach --base_url unparsable", f"{TEACH} {OPENAI} --base_url http://[::1/v1", "http://[::1/v1"),
    Case(
        "push --repo_id not a repo id",
        "push --what rationales --path {rationales} --repo_id 'not a repo!!'",
        "not a repo!!",
    ),  # fmt: skip
    Case(
        "teach into a rationale folder with a damaged Parquet",
        "teach --tasks multiarith --limit 2 --data_dir {mirror} --cache_dir {tmp}/c.sqlite --output_dir {tmp}/damaged",
        "damaged/coin_flip/train-",
    ),
    Case("train --output_dir is a file", f"{TRAIN.replace('{tmp}/s', '{tmp}/notes.txt')}", "notes.txt"),
    Case("run --output_dir is a file", f"{RUN.replace('{tmp}/run', '{tmp}/notes.txt')}", "notes.txt"),
    Case(
        "run --student a Hub id not in the offline cache",
        f"{RUN.replace('{student}', 'nope-student')}",
        "'nope-student'",
    ),  # fmt: skip
    # -- issue 32: flag names, typos, own data -----------------------------------------------------------------------
    Case("teach misspelt flag", f"{TEACH} --degre 2", "did you mean --degree"),
    Case("train abbreviated flag", f"{TRAIN} --num_train_epoch 2", "did you mean --num_train_epochs"),
    Case("run --limit of which stage", f"{RUN} --limit 3", "--limit_test or --limit_train"),
    Case(
        "run own dataset with the recorded teacher",
        f"{RUN} --dataset {{tmp}}/qa.jsonl {QA} --test_size 0.2",
        "--teacher openai --model NAME",
    ),
    Case(
        "run --student a Hub id not cached offline",
        f"{RUN.replace('{student}', 'nobody/no-such-student')}",
        "HF_HUB_OFFLINE",
    ),
)


def argv(case: Case, places: dict[str, str]) -> list[str]:
    return shlex.split(case.command.format(**places))


_PROGRESS = re.compile(r"\d+%\||\d+/\d+ \[|it/s|examples/s|ba/s")
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_lines(err: str) -> list[str]:
    """What stderr says, less progress bars and argparse's usage block (which precedes its one error line)."""
    text = _ESCAPES.sub("", err).replace("\r", "\n")
    lines = [line for line in text.splitlines() if line.strip() and not _PROGRESS.search(line)]
    if lines and lines[0].startswith("usage:"):
        lines = [line for line in lines if "error:" in line]
    return lines


@contextlib.contextmanager
def log_streams_to(stream: io.StringIO) -> Iterator[None]:
    """Every logging StreamHandler (the libraries' own: datasets binds one to stderr at import) writes to ``stream``
    meanwhile: what they print reaches the user's terminal as surely as our line does."""
    handlers = [h for name in [None, *logging.Logger.manager.loggerDict] for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                and "stream" in vars(h)]  # fmt: skip
    before = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = stream
    try:
        yield
    finally:
        for handler, old in zip(handlers, before, strict=True):
            handler.stream = old


def judge(case: Case, places: dict[str, str]) -> tuple[str | None, float]:
    """Run ``case`` in-process: None when it is a clear error (exit 2, one line naming the value, no traceback),
    else what is wrong; and the seconds it took."""
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), log_streams_to(err):
        try:
            rc: int | str = main(argv(case, places))
        except SystemExit as e:  # argparse exits itself
            rc = e.code if isinstance(e.code, int) else str(e.code)
        except BaseException as e:  # noqa: BLE001 -- a raw exception is exactly what this table looks for
            rc = f"raised {type(e).__name__}: {' '.join(str(e).split())[:160]}"
    seconds = time.perf_counter() - t
    text = err.getvalue()
    lines = error_lines(text)
    if rc != 2:
        return f"exit {rc}; stderr: {' | '.join(lines)[-300:]}", seconds
    if "Traceback" in text:
        return "a traceback was printed", seconds
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr: {' | '.join(lines)[-300:]}", seconds
    if case.needle not in lines[0]:
        return f"the line does not name {case.needle!r}: {lines[0][:300]}", seconds
    return None, seconds


def make_files(tmp: Path, rationales: Path) -> None:
    """The bad files the table refers to, in ``tmp``."""
    (tmp / "bad.yaml").write_text("tasks: [coin_flip\ndegree: 2\n")
    (tmp / "list.yaml").write_text("- coin_flip\n- multiarith\n")
    (tmp / "unknown_key.yaml").write_text("tasks: [coin_flip]\ndegre: 4\n")
    (tmp / "notes.txt").write_text("mine")
    (tmp / "empty").mkdir(exist_ok=True)
    rows = [{"q": f"What is {a} plus {a}?", "a": str(2 * a)} for a in range(10)]
    (tmp / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "qa_bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"q": "And 3+4?", "a": "seven"}]))
    (tmp / "qa_twice.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"q": rows[1]["q"], "a": "3"}]))
    (tmp / "empty.jsonl").write_text("")
    (tmp / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    lines = [json.dumps(r) + "\n" for r in rows]
    (tmp / "broken.jsonl").write_text("".join([*lines[:6], '{"q": "What is 7 plus 7?", "a": \n', *lines[6:]]))
    (tmp / "tasks_5.yaml").write_text("tasks: 5\n")
    (tmp / "kwargs_list.yaml").write_text("teacher: openai\nmodel: m\nbase_url: http://127.0.0.1:9/v1\n"
                                          "teacher_kwargs: [1, 2]\n")  # fmt: skip
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81tasks: [x]\n\x9c")
    _rationale_variants(tmp, rationales)


def _rationale_variants(tmp: Path, rationales: Path) -> None:
    """Copies of a good rationale folder whose coin_flip train Parquet has 0 rows, other columns than the card, or
    is no Parquet at all (damaged)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("zero_rows", "bad_schema", "damaged"):
        folder = tmp / name
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(rationales, folder)
        [parquet] = (folder / "coin_flip").glob("train-*.parquet")
        if name == "damaged":
            parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])  # a copy cut short
            continue
        table = pq.read_table(parquet)
        if name == "zero_rows":
            table = table.slice(0, 0)
        else:
            table = pa.table({"sample_index": table["sample_index"], "text": table["rationale"]})
        pq.write_table(table, parquet)


def teach_rationales(folder: Path, mirror: Path) -> Path:
    """A small rationale dataset from the recorded teacher (offline, ~1 s)."""
    args = ["teach", "--tasks", "coin_flip", "--limit", "8", "--data_dir", str(mirror), "--cache_dir",
            str(folder / "c.sqlite"), "--output_dir", str(folder / "rationales")]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(args) == 0
    return folder / "rationales"


# -- the tests -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(mirror, tiny_gpt2, tmp_path_factory) -> dict[str, str]:
    rationales = teach_rationales(tmp_path_factory.mktemp("bad_inputs_rationales"), mirror)
    return {"mirror": str(mirror), "student": str(tiny_gpt2), "rationales": str(rationales)}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason=c.known) if c.known else ()) for c in CASES],
)
def test_a_bad_input_is_one_clear_line_and_exit_2(case, shared, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_files(tmp_path, Path(shared["rationales"]))
    problem, _ = judge(case, {**shared, "tmp": str(tmp_path)})
    assert problem is None, problem


def test_the_table_covers_issue_15_and_every_command():
    commands = {c.command.split()[0] for c in CASES}
    assert {"teach", "train", "eval", "run", "push", "show", "decontaminate", "export-lm-eval"} <= commands
    assert len(CASES) >= 90 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "case_id", ["teach --base_url not a url", "teach --limit abc", "train --rationales Parquet schema differs"]
)
def test_typed_in_a_shell_a_case_is_judged_as_in_process(case_id, shared, tmp_path):
    """The in-process judgement agrees with a real `ftcot` process (its stderr, every library's output included)."""
    import os
    import subprocess
    import sys

    case = next(c for c in CASES if c.id == case_id)
    make_files(tmp_path, Path(shared["rationales"]))
    places = {**shared, "tmp": str(tmp_path)}
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "ftcot_hf.cli", *argv(case, places)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    lines = error_lines(proc.stderr)
    clear = proc.returncode == 2 and len(lines) == 1 and case.needle in lines[0] and "Traceback" not in proc.stderr
    problem, _ = judge(case, places)
    assert clear == (problem is None) == (not case.known), (proc.returncode, lines, problem)


def test_run_refuses_a_missing_student_before_the_teacher_is_asked_anything(shared, tmp_path, monkeypatch):
    """Issue 31 item 7: `ftcot run --student nope-student` used to teach (a paid teacher: money spent) and only then
    fail to load the student."""
    from tests.fake_openai_server import FakeOpenAIServer

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    places = {**shared, "tmp": str(tmp_path), "student": "nope-student"}
    with FakeOpenAIServer() as server:
        command = f"{RUN} --teacher openai --teacher_model m --base_url {server.base_url}"
        problem, _ = judge(Case("run, missing student, a served teacher", command, "'nope-student'"), places)
        assert problem is None, problem
        assert server.requests == []
    assert not (tmp_path / "run" / "rationales").exists()
