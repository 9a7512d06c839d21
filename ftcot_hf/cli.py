"""The ``ftcot`` command line: a thin face over the library.

Subcommands:
    ftcot tasks                              the 12 tasks: answer type, train/test sizes, source licence
    ftcot show TASK [--split test] [-n 3]    a few records of a task
    ftcot teach [--config teach.yaml] [--tasks coin_flip ...] [--teacher text-davinci-002|transformers|openai] ...
                                             teach tasks, save the rationale dataset, print the yield report
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from collections.abc import Sequence

from ftcot_hf.errors import FtcotError


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*["-" * w for w in widths])]
    out += [line.format(*map(str, row)) for row in rows]
    return "\n".join(out)


def cmd_tasks(args: argparse.Namespace) -> int:
    from ftcot_hf.tasks import TASKS

    rows = []
    for name, spec in TASKS.items():
        n_train, n_test = spec.split_sizes("default")
        optional = "*" if spec.optional_sources else ""
        rows.append(
            [
                name,
                spec.answer_type,
                f"{n_train}{optional}",
                n_test,
                spec.size,
                ", ".join(spec.split_variants()[1:]),
                spec.license,
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
    from ftcot_hf.tasks.builder import load_task

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


def cmd_teach(args: argparse.Namespace) -> int:
    from trl import TrlParser

    from ftcot_hf.augment import YieldReport
    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    parser = TrlParser((TeachConfig,), prog="ftcot teach")
    (config,) = parser.parse_args_and_config(args.rest)
    results, reports = teach(config, progress=True)
    out = save_rationales(config, results, reports)
    print(YieldReport.markdown(reports))
    print(f"\nSaved to {out}; load with: load_dataset({str(out)!r}, {config.tasks[0]!r})")
    return 0


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

    p = sub.add_parser("teach", help="Teach tasks with a teacher; see `ftcot teach --help`.", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_teach)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["teach"]:  # its flags come from TeachConfig through TrlParser, not from argparse here
        args = argparse.Namespace(command="teach", func=cmd_teach, rest=argv[1:], verbose="-v" in argv[1:])
        args.rest = [a for a in args.rest if a != "-v"]
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (FtcotError, ValueError) as e:
        print(f"ftcot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
