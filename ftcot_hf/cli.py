"""The ``ftcot`` command line: a thin face over the library.

Subcommands:
    ftcot tasks                              the 12 tasks: answer type, train/test sizes, source licence
    ftcot show TASK [--split test] [-n 3]    a few records of a task
    ftcot teach [--config teach.yaml] [--tasks coin_flip ...] [--teacher text-davinci-002|transformers|openai] ...
                                             teach tasks, save the rationale dataset, print the yield report
    ftcot cache check|repair [--cache_dir F]  read every cached reply / salvage a damaged cache into a fresh file
    ftcot merge DIR... --output_dir OUT [--cache [FILE...]]
                                             the parts of a `teach --num_shards N` run into the one run's dataset
    ftcot export-lm-eval OUT [--tasks coin_flip ...]
                                             an lm-eval task folder scoring students as `ftcot eval` does
    ftcot decontaminate [--tasks multiarith ...] [--rationales DIR] [--drop_overlap OUT]
                                             train<->test question overlap (exact, 8-gram), test n-grams in rationales
    ftcot train | distill | eval | push | run ...
                                             delegated: each module parses its own flags (TrlParser /
                                             HfArgumentParser with --config YAML); see `ftcot <command> --help`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.lm_eval_export import add_arguments, cmd_export
from ftcot_hf.plugins import load_plugins
from ftcot_hf.tasks import TASKS, resolve_task
from ftcot_hf.utils.scrub import install_log_scrubber, scrub_text


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*["-" * w for w in widths])]
    out += [line.format(*map(str, row)) for row in rows]
    return "\n".join(out)


def cmd_tasks(args: argparse.Namespace) -> int:
    rows = []
    for name, task in TASKS.items():
        n_train, n_test = task.split_sizes("default")
        optional = "*" if task.source.optional_sources else ""
        rows.append(
            [
                name,
                task.answer_type,
                f"{n_train}{optional}",
                n_test,
                task.source.size,
                ", ".join(task.split_variants()[1:]),
                task.license,
            ]
        )
    if args.json:
        keys = ["task", "answer_type", "train", "test", "size", "variants", "license"]
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return 0
    print(_table(rows, ["task", "answer type", "train", "test", "records", "split variants", "source licence"]))
    print(
        "\n* AQuA's train split needs the 97,467-question train.json of deepmind/AQuA (downloaded when online; "
        "not in the offline mirror)."
    )
    print("Load one with: python -c \"import ftcot_hf; print(ftcot_hf.load_task('coin_flip'))\"")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ftcot_hf.tasks.builder import load_task  # heavy: imports datasets; `ftcot tasks` must stay fast

    if args.n < 1:
        raise FtcotError(f"-n must be a positive number of records, got {args.n}.")
    ds = load_task(args.task, args.variant, data_dir=args.data_dir)
    if args.split not in ds:
        raise FtcotError(f"Task {args.task} has no {args.split!r} split here (available: {', '.join(ds)}).")
    split = ds[args.split]
    columns = ", ".join(split.column_names)
    print(f"{args.task} [{args.variant}] {args.split}: {split.num_rows} records; columns: {columns}")
    for row in split.select(range(min(args.n, split.num_rows))):
        print(f"\n#{row['sample_index']}")
        print(f"  Q: {row['question']}")
        print(f"  A: {row['answer']}")
        if row.get("rationale"):
            print(f"  rationale: {textwrap.shorten(row['rationale'], 200)}")
    return 0


def cmd_decontaminate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ftcot_hf.teach.decontamination import (  # light path: only this command needs it
        REPORT_HEADERS,
        decontamination_report,
        drop_overlap,
        format_report,
        load_rationale_train,
    )

    tasks = [resolve_task(name) for name in args.tasks]
    reports, kept = [], {}
    for task in tasks:
        dataset = task.load(data_dir=args.data_dir)
        rationales = load_rationale_train(args.rationales, task.name) if args.rationales else None
        report = decontamination_report(task, dataset=dataset, rationales=rationales, ngram=args.ngram)
        reports.append(report)
        if args.drop_overlap:
            train = rationales.to_dataset() if rationales is not None else dataset["train"]
            kept[task.name] = {"train": drop_overlap(train, report, args.drop_on), "test": dataset["test"]}
            report["dropped_train_rows"] = train.num_rows - kept[task.name]["train"].num_rows
    headers = [h.replace("8-gram", f"{args.ngram}-gram") for h in REPORT_HEADERS]
    print(_table(format_report(reports), headers))
    output = Path(
        args.output
        or (Path(args.drop_overlap) / "decontamination.json" if args.drop_overlap else "decontamination.json")
    )
    if args.drop_overlap:
        from ftcot_hf.utils.export import write_parquet_configs  # heavy: huggingface_hub; `ftcot tasks` stays fast

        write_parquet_configs(args.drop_overlap, kept)
        dropped = ", ".join(f"{r['task']}: {r['dropped_train_rows']}" for r in reports)
        print(f"\nWrote the train splits without the flagged rows to {args.drop_overlap} (dropped {dropped}).")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
    print(f"Report (with every id pair): {output}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    import os

    from ftcot_hf.teach.merge import merge_caches, merge_rationales, part_caches, read_part
    from ftcot_hf.teach.yields import YieldReport
    from ftcot_hf.teachers.cache import default_cache_path

    if args.cache is not None:  # before the rows: a cache file that is not there fails before any work
        sources = args.cache or part_caches([read_part(d) for d in args.dirs])
        missing = [str(f) for f in sources if not os.path.isfile(f)]
        if missing:
            raise FtcotError(f"ftcot merge --cache: no request cache at {missing[0]}: give the parts' cache files "
                             "where they are now (--cache FILE...).")  # fmt: skip
    out, reports = merge_rationales(args.dirs, args.output_dir, repo_id=args.repo_id, lock_timeout=args.lock_timeout)
    print(YieldReport.markdown(reports))
    for r in reports:
        print(r.ledger_summary())
    print(f"\nMerged {len(args.dirs)} parts into {out}; load with: load_dataset({str(out)!r}, {reports[0].task!r})")
    if args.cache is not None:
        counts = merge_caches(sources, args.cache_dir)
        target = args.cache_dir or str(default_cache_path())
        print(f"Merged {len(sources)} request caches into {target}: {counts['added']} requests added, "
              f"{counts['merged']} merged with the same request there.")  # fmt: skip
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from ftcot_hf.teachers.cache_tools import check, repair

    status, report = (check if args.action == "check" else repair)(args.cache_dir)
    print(report)
    return status


# Commands whose flags come from config dataclasses (TrlParser/HfArgumentParser) live beside their config; the
# module is imported only when its command runs, so `ftcot tasks` stays fast.
DELEGATED: dict[str, tuple[str, str]] = {
    "teach": ("ftcot_hf.teach.cli", "Teach tasks with a teacher and save the rationale dataset."),
    "train": ("ftcot_hf.training.cli", "Fine-tune a student on a rationale dataset."),
    "distill": ("ftcot_hf.training.distill", "On-policy distillation of a trained student from a teacher (TRL)."),
    "eval": ("ftcot_hf.evaluation.cli", "Evaluate a student (or a baseline) on a task's test split."),
    "push": ("ftcot_hf.hub.cli", "Publish a rationale dataset or a student to the Hub."),
    "run": ("ftcot_hf.pipeline", "teach -> filter -> format -> train -> evaluate -> report (-> push)."),
}


def _run_delegated(command: str, argv: list[str]) -> int:
    import importlib

    module_name, _ = DELEGATED[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("ftcot_hf"):
            raise FtcotError(f"`ftcot {command}` is not available in this version ({e.name} missing).") from e
        raise
    return int(module.cli_main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftcot", description="Fine-tune-CoT on the Hugging Face stack.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="List the 12 tasks with their sizes, answer types and licences.")
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("show", help="Print a few records of a task.")
    p.add_argument("task", help="Task name (see `ftcot tasks`).")
    p.add_argument("--split", default="test", help="train or test (default: test).")
    p.add_argument("--variant", default="default", help="Split variant: default, template, {n}shot.")
    p.add_argument("-n", type=int, default=3, help="Number of records (default: 3).")
    p.add_argument("--data-dir", default=None, help="Offline mirror directory (default: $FTCOT_DATA_MIRROR).")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("decontaminate", help="Train<->test question overlap of tasks (exact, n-gram, rationales).")
    p.add_argument("--tasks", nargs="+", required=True, help="Task names (see `ftcot tasks`).")
    p.add_argument("--rationales", default=None, help="A rationale dataset folder: check its train rationales too.")
    p.add_argument(
        "--drop_overlap",
        default=None,
        metavar="OUT",
        help="Write each task's train split (the rationales' when given) without flagged rows to OUT.",
    )
    p.add_argument(
        "--drop_on",
        nargs="+",
        default=["exact"],
        choices=["exact", "near_duplicate", "ngram", "rationales"],
        help="Which flagged rows --drop_overlap drops (default: exact; ngram drops nearly all of templated tasks).",
    )
    p.add_argument("--ngram", type=int, default=8, help="Word n-gram length (default: 8, as open-r1).")
    p.add_argument("--output", default=None, help="JSON report (default: decontamination.json, or OUT/...).")
    p.add_argument("--data-dir", default=None, help="Offline mirror directory (default: $FTCOT_DATA_MIRROR).")
    p.set_defaults(func=cmd_decontaminate)

    p = sub.add_parser("cache", help="Check or repair the teacher request cache (a damaged file: salvage it).")
    p.add_argument("action", choices=["check", "repair"],
                   help="check: read every row, exit 1 when damaged; repair: keep the readable rows in a fresh "
                   "file, the damaged one kept aside as <file>.damaged-<timestamp>.")  # fmt: skip
    p.add_argument("--cache_dir", "--cache-dir", default=None,
                   help="The cache file (default: $FTCOT_CACHE or $HF_HOME/ftcot/teacher_cache.sqlite).")  # fmt: skip
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("merge", help="Merge the parts of a `ftcot teach --num_shards N` run into one rationale "
                       "dataset (and their request caches).")  # fmt: skip
    p.add_argument("dirs", nargs="+", metavar="DIR", help="The parts' --output_dir folders (any order).")
    p.add_argument("--output_dir", "--output-dir", required=True,
                   help="Where the merged rationale dataset is written (as `ftcot teach` writes one).")  # fmt: skip
    p.add_argument("--cache", nargs="*", default=None, metavar="FILE",
                   help="Also merge the parts' request caches into --cache_dir: the files given, or without any the "
                   "parts' default ones ($HF_HOME/ftcot/teacher_cache.shard-I-of-N.sqlite).")  # fmt: skip
    p.add_argument("--cache_dir", "--cache-dir", default=None,
                   help="The cache --cache merges into (default: $FTCOT_CACHE or "
                   "$HF_HOME/ftcot/teacher_cache.sqlite).")  # fmt: skip
    p.add_argument("--repo_id", "--repo-id", default=None, help="Repo id shown in the card (default: the parts').")
    p.add_argument("--lock_timeout", "--lock-timeout", type=float, default=600.0,
                   help="Seconds to wait while another process writes --output_dir.")  # fmt: skip
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export-lm-eval", help="Write an lm-eval task folder that scores as `ftcot eval` does.")
    add_arguments(p)
    p.set_defaults(func=cmd_export)

    for command, (_, help_text) in DELEGATED.items():
        p = sub.add_parser(command, help=f"{help_text} See `ftcot {command} --help`.", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


_VERBOSE = ("-v", "--verbose")


def _check_config_file(rest: list[str]) -> None:
    """``--config FILE`` must exist and be YAML: say so in one line instead of TrlParser's traceback."""
    import yaml

    for i, arg in enumerate(rest):
        path = rest[i + 1] if arg == "--config" and i + 1 < len(rest) else arg.partition("=")[2]
        if not (arg == "--config" or arg.startswith("--config=")) or not path:
            continue
        try:
            yaml.safe_load(open(path, encoding="utf-8").read())  # noqa: SIM115 -- read once, closed at exit
        except FileNotFoundError:
            raise FtcotError(f"--config {path}: no such file.") from None
        except UnicodeDecodeError as e:
            raise FtcotError(f"--config {path} is not a YAML text file (byte {e.object[e.start]:#04x} at offset "
                             f"{e.start} is not UTF-8).") from None  # fmt: skip
        except IsADirectoryError:
            raise FtcotError(f"--config {path} is a folder: give a YAML file.") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise FtcotError(f"--config {path} is not valid YAML{where}: {getattr(e, 'problem', e)}.") from None


def _close_progress_bars() -> None:
    """A stage that fails mid-way leaves its bar open (the Trainer's does not close on an exception): close them, so
    the error starts on a line of its own."""
    tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


EXIT_TERMINATED = 128 + signal.SIGTERM
"""Exit status after SIGTERM (143, as a shell reports a process the signal ended)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, Kubernetes and `kill` send) raised as an interrupt: every cleanup that Ctrl-C runs (the
    teacher's requests in flight dropped, the request cache closed with every reply kept, half-built folders left
    out of place, epoch checkpoints kept) runs for it too."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short (SIGKILL follows)
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM handled as SIGINT while a command runs; the previous handler is back after it (``main`` may be called
    in-process). Only the main thread can set a handler: elsewhere SIGTERM keeps its default."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    with _sigterm_as_interrupt():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv[:1] and argv[0] in _VERBOSE:  # `ftcot -v teach ...`, the form --help shows
        verbose, argv = True, argv[1:]
    if argv[:1] and argv[0] in DELEGATED:  # their flags come from config dataclasses, not from argparse here
        rest = [a for a in argv[1:] if a not in _VERBOSE]
        args = argparse.Namespace(command=argv[0], rest=rest, verbose=verbose or len(rest) < len(argv) - 1)
    else:
        args = parser.parse_args(argv)
        args.verbose = args.verbose or verbose
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    install_log_scrubber()  # a URL's credentials and every registered secret are masked in every log record
    try:
        load_plugins()  # a plug-in's tasks, formats, answer types and teachers are known to every command
        if args.command in DELEGATED:
            _check_config_file(args.rest)
            return _run_delegated(args.command, args.rest)
        return args.func(args)
    except (FtcotError, ValueError) as e:
        _close_progress_bars()
        print(f"ftcot: error: {scrub_text(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        _close_progress_bars()
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(
            f"\nftcot: {how}. What was finished is kept (every teacher reply in the request cache, every "
            f"completed stage and epoch checkpoint): run the same `ftcot {args.command}` command again to resume.",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
