"""Export Fine-tune-CoT tasks as a Hub-ready dataset repository (Parquet files + README with ``configs:``).

The result loads with no code, locally or once pushed to the Hub::

    python dataset_scripts/export_tasks.py out/ftcot-tasks                 # all tasks, default splits
    python dataset_scripts/export_tasks.py out/ftcot-tasks --tasks coin_flip multiarith --variants template
    python -c "from datasets import load_dataset; print(load_dataset('out/ftcot-tasks', 'coin_flip'))"
    hf upload --repo-type dataset <you>/ftcot-tasks out/ftcot-tasks   # then load_dataset('<you>/ftcot-tasks', ...)

Raw files come from $FTCOT_DATA_MIRROR (or ``--data-dir``) when set, else from their public URLs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ftcot_hf import TASKS, get_task, load_task
from ftcot_hf.tasks.builder import config_name
from ftcot_hf.utils.export import licenses_of, write_dataset_repo

logger = logging.getLogger("export_tasks")


def export(
    out_dir: str | Path,
    tasks: list[str] | None = None,
    variants: list[str] | None = None,
    *,
    data_dir: str | Path | None = None,
    repo_id: str = "<user>/ftcot-tasks",
) -> Path:
    """Write ``{config}/{split}-00000-of-00001.parquet`` per task and variant, and a README.md card."""
    configs, rows, sources, licenses = {}, [], [], set()
    for name in tasks or list(TASKS):
        spec = get_task(name)
        for variant in variants or ["default"]:
            if variant not in spec.split_variants() and not variant.endswith("shot"):
                logger.info("%s has no %s split variant; skipped", name, variant)
                continue
            ds = load_task(name, variant, data_dir=data_dir)
            cname = config_name(name, variant)
            configs[cname] = ds
            rows.append(
                {
                    "config": cname,
                    "title": spec.title,
                    "answer_type": spec.answer_type,
                    "train": ds["train"].num_rows if "train" in ds else "(needs AQuA train.json)",
                    "test": ds["test"].num_rows,
                    "license": spec.license,
                }
            )
        for source in spec.provenance():
            sources.append({"task": name, **source, "sha256": source["sha256"] or "not pinned"})
        licenses.add(spec.license)
    return write_dataset_repo(
        out_dir,
        configs,
        template="tasks_dataset_card.md",
        card_data={
            "language": "en",
            "license": licenses_of(licenses),
            "task_categories": ["question-answering", "text-generation"],
            "pretty_name": "Fine-tune-CoT tasks",
            "tags": ["reasoning", "chain-of-thought", "fine-tune-cot"],
        },
        pretty_name="Fine-tune-CoT tasks",
        tasks=rows,
        sources=sources,
        repo_id=repo_id,
        citation=get_task(rows[0]["config"].split("__")[0]).citation,  # the edge: names from the command line
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="Folder to write the dataset repository into.")
    parser.add_argument("--tasks", nargs="*", default=None, help="Task names (default: all 12).")
    parser.add_argument("--variants", nargs="*", default=None, help="Split variants (default: default).")
    parser.add_argument("--data-dir", default=None, help="Offline mirror (default: $FTCOT_DATA_MIRROR).")
    parser.add_argument("--repo-id", default="<user>/ftcot-tasks", help="Repo id shown in the card's example.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = export(args.out_dir, args.tasks, args.variants, data_dir=args.data_dir, repo_id=args.repo_id)
    print(f"Wrote {out} (load with: load_dataset({str(out)!r}, '<config>'))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
