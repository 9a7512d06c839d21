"""``ftcot push``: its config (:class:`PushConfig`, also the ``hub:`` section of ``ftcot run``'s) and command.

The publishing itself is :mod:`ftcot_hf.hub.publish` (``push_rationales`` / ``push_student``); :func:`push` reads a
PushConfig into one of those calls, for ``ftcot push`` and ``ftcot run --push_to_hub`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ftcot_hf.errors import FtcotError
from ftcot_hf.hub.publish import PushResult, check_repo_id, push_rationales, push_student
from ftcot_hf.utils.parser import command_parser


@dataclass
class PushConfig:
    """``ftcot push``: publish a rationale dataset or a trained student.

    The token comes from ``HF_TOKEN`` or ``hf auth login`` (there is no flag for it: a flag would end up in shell
    history and process lists).

    Parameters for both:
        what, path, repo_id, private, revision, commit_message
    Parameters of the student's card:
        base_model, task, format, dataset_repo, recipe_file, results_file, license
    """

    FLAG_ALIASES: ClassVar[dict[str, str]] = {"hub_private": "private", "hub_revision": "revision",
                                              "hub_commit_message": "commit_message", "hub_license": "license"}
    """`ftcot run`'s names of these fields, accepted here too (one set of flag names)."""

    what: str = field(default="rationales", metadata={"help": "What to push: 'rationales' or 'student'."})
    path: str | None = field(
        default=None,
        metadata={
            "help": "rationales: the output_dir of `ftcot teach`; student: the folder the student was saved to."
        },
    )
    repo_id: str | None = field(default=None, metadata={"help": "Target repo: owner/name (or name: your user)."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created when missing)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message."})
    base_model: str | None = field(
        default=None, metadata={"help": "student: the Hub id it was fine-tuned from (or 'smollm2-135m-instruct')."}
    )
    task: str | None = field(default=None, metadata={"help": "student: the task it was trained on."})
    format: str = field(
        default="ft_cot", metadata={"help": "student: the student format (ftcot_hf.students.formats)."}
    )
    dataset_repo: str | None = field(default=None, metadata={"help": "student: the rationale dataset's Hub id."})
    recipe_file: str | None = field(
        default=None, metadata={"help": "student: JSON or YAML file with the training recipe (shown in the card)."}
    )
    results_file: str | None = field(
        default=None,
        metadata={"help": "student: `ftcot eval`'s results.json, or a JSON of metrics (accuracy as a fraction)."},
    )
    license: str | None = field(default=None, metadata={"help": "student: licence id for the card."})


def _results_of(data: dict[str, Any], task: str, path: str) -> dict[str, Any]:
    """The metrics of ``task`` in a results file: ``ftcot eval``'s results.json (a ``results`` list, one entry per
    task), ``{"metrics": {...}}``, or the metrics themselves."""
    if isinstance(data.get("results"), list):
        entries = [r for r in data["results"] if isinstance(r, dict) and r.get("task") in (task, "", None)]
        if not entries:
            found = ", ".join(str(r.get("task")) for r in data["results"] if isinstance(r, dict))
            raise FtcotError(f"{path} has no results for task {task!r} (it has: {found or 'none'}).")
        return entries[0]
    if isinstance(data.get("metrics"), dict):
        return data["metrics"]
    return data


def _read_mapping(path: str | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FtcotError(f"{what} file {path} not found.")
    try:
        data = yaml.safe_load(file.read_text())  # JSON is YAML
    except yaml.YAMLError as e:
        raise FtcotError(f"{what} file {path} is not valid JSON/YAML: {e}") from e
    if not isinstance(data, dict):
        raise FtcotError(f"{what} file {path} must hold a mapping (key: value), not {type(data).__name__}.")
    return data


def push(config: PushConfig, *, recipe: Mapping[str, Any] | None = None,
         results: Mapping[str, Any] | None = None) -> PushResult:  # fmt: skip
    """Publish what ``config`` names (``push_rationales`` or ``push_student``, by ``config.what``). ``ftcot push``
    and ``ftcot run --push_to_hub`` (one PushConfig per upload, its ``hub:`` section's values included) both end
    here, so a field added to PushConfig and read here reaches both. ``recipe`` / ``results``: a student card's
    values when the caller holds them (a run does), instead of ``recipe_file`` / ``results_file``."""
    if not config.path or not config.repo_id:
        raise FtcotError("ftcot push needs --path and --repo_id (see `ftcot push --help`).")
    check_repo_id(config.repo_id)  # a typo is named before the token is looked for
    if config.what == "rationales":
        return push_rationales(
            config.path, config.repo_id, private=config.private, revision=config.revision,
            commit_message=config.commit_message,
        )  # fmt: skip
    if config.what != "student":
        raise FtcotError(f"--what must be 'rationales' or 'student', not {config.what!r}.")
    if not config.base_model or not config.task:
        raise FtcotError("ftcot push --what student needs --base_model and --task (they go into the card).")
    if results is None:
        results = _read_mapping(config.results_file, "results")
        if results is not None:
            results = _results_of(results, config.task, str(config.results_file))
    return push_student(
        config.path, config.repo_id, base_model=config.base_model, task=config.task, format=config.format,
        recipe=recipe if recipe is not None else _read_mapping(config.recipe_file, "recipe"), results=results,
        dataset_repo=config.dataset_repo, private=config.private, revision=config.revision,
        license=config.license, commit_message=config.commit_message,
    )  # fmt: skip


def cli_main(argv: list[str]) -> int:
    """``ftcot push``: flags or ``--config push.yaml`` (TrlParser over :class:`PushConfig`)."""
    parser = command_parser((PushConfig,), argv, prog="ftcot push")
    (config,) = parser.parse(argv)
    print(push(config).summary())
    return 0
