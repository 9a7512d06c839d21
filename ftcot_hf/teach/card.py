"""The rationale dataset card (``rationale_dataset_card.md``): the one writer of it (``ftcot teach`` saves it, ``ftcot
push`` uploads it), and what a teach config may show of itself there (:func:`scrub_config`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.tasks.citation import KOJIMA_CITATION, PAPER_CITATION
from ftcot_hf.tasks.prompts import ANSWER_PHRASE, ONE_STAGE_INSTRUCTION
from ftcot_hf.teach.recipe import describe as describe_recipe
from ftcot_hf.teach.yields import YieldReport
from ftcot_hf.teachers import PAPER_TEACHER, preset
from ftcot_hf.utils.card import is_hub_id, validate_card
from ftcot_hf.utils.export import licenses_of, template_text
from ftcot_hf.utils.scrub import redact, scrub_url

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard

DATASET_TEMPLATE = "rationale_dataset_card.md"
DATASET_CARD_DATA: dict[str, Any] = {
    "language": "en",
    "task_categories": ["text-generation", "question-answering"],
    "pretty_name": "Fine-tune-CoT rationales",
    "tags": ["reasoning", "chain-of-thought", "fine-tune-cot", "distillation"],
}


def scrub_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A teach config fit for writing and publishing: no local paths, no credentials or query strings in URLs, no
    secret-looking value at any depth (``api_key``, ``extra_body.user_token``...:
    :func:`ftcot_hf.utils.scrub.redact`), a local dataset named by its file name only."""
    local = ("cache_dir", "output_dir", "data_dir", "replay_file")
    out = {k: v for k, v in config.items() if k not in local}
    if out.get("base_url"):
        urls = [out["base_url"]] if isinstance(out["base_url"], str) else out["base_url"]
        out["base_url"] = [scrub_url(u) for u in urls]
    if out.get("dataset") and Path(str(out["dataset"])).expanduser().exists():
        out["dataset"] = Path(str(out["dataset"])).name
    return redact(out)


# The Hub's size_categories buckets (number of rows, all configs and splits).
SIZE_BUCKETS = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                (10**11, "10B<n<100B"), (10**12, "100B<n<1T"))  # fmt: skip
OTHER_LICENSE_NAME = "per-source-licenses"  # "other" = sources with no stated licence: the card's Sources table


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` value for ``num_rows`` rows (``n<1K``, ``1K<n<10K``, ..., ``n>1T``)."""
    return next((name for bound, name in SIZE_BUCKETS if num_rows < bound), "n>1T")


def parquet_rows(folder: str | Path, configs: Sequence[Mapping[str, Any]]) -> int:
    """Rows of every Parquet file the ``configs:`` entries list under ``folder`` (read from the file footers)."""
    import pyarrow.parquet as pq

    files = {f for entry in configs for item in entry.get("data_files", []) for f in Path(folder).glob(item["path"])}
    return sum(pq.read_metadata(f).num_rows for f in files)


def _is_recorded_kojima(config: Mapping[str, Any], reps: Sequence[Any]) -> bool:
    """Whether the rationales are the replayed text-davinci-002 completions of Kojima et al.: the preset (unless
    given a recording of its own) or a report naming that recording."""
    kwargs = config.get("teacher_kwargs")
    own_recording = bool(kwargs.get("replay_file")) if isinstance(kwargs, Mapping) else "replay_file" in str(kwargs)
    named = preset(config.get("teacher"))
    return any(r.teacher == PAPER_TEACHER.model for r in reps) or (named is PAPER_TEACHER and not own_recording)


def yield_reports(reports: Sequence[Any] | None) -> list[Any]:
    names = {f.name for f in fields(YieldReport)}
    out = []
    for r in reports or []:
        out.append(
            r if isinstance(r, YieldReport) else YieldReport(**{k: v for k, v in dict(r).items() if k in names})
        )
    return out


LEDGER_INTRO = (
    "Teacher requests and tokens (the run that made each task's rows): requests sent to the teacher (samples served "
    "by the request cache cost nothing), attempts retried and timed out, requests that failed for good, answers the "
    "server billed that could not be used (malformed, wrong number of choices: their tokens are in the totals and "
    "the cost), and requests not sent because the budget (`--max_requests` / `--max_cost`) was spent."
)


FILTERS_INTRO = (
    "Rows each filter removed (the data recipe, `docs/data-recipe.md`): the filters run left to right, each on the "
    "rows the ones before it kept; samples minus the rows removed = rows kept."
)


def _band(config: Mapping[str, Any]) -> tuple[float, float]:
    low, high = config.get("pass_rate_min"), config.get("pass_rate_max")
    return (0.0 if low is None else low, 1.0 if high is None else high)


def render_dataset_card(
    tasks: Sequence[str | Task],
    *,
    repo_id: str,
    teach_config: Mapping[str, Any] | Any | None = None,
    reports: Sequence[Any] | None = None,
    configs: list[dict[str, Any]] | None = None,
    dataset_info: Any = None,
    num_rows: int | None = None,
) -> DatasetCard:
    """The rationale dataset card (``rationale_dataset_card.md``): the one writer of it (``ftcot teach`` saves it,
    :func:`push_rationales` uploads it).

    Args:
        tasks: the tasks in the dataset (objects, or registered names).
        repo_id: shown in "How to load".
        teach_config: the ``TeachConfig`` (or its dict, as in ``yield_report.json``): teacher, D, T, filter.
        reports: the ``YieldReport`` objects (or their dicts): the yield table.
        configs: the YAML ``configs:`` entries (default: ``{task}/{split}-*`` for train and test).
        dataset_info: the YAML ``dataset_info`` that ``datasets`` wrote (features, sizes), kept as is.
        num_rows: rows over all configs and splits (:func:`parquet_rows`): the metadata's ``size_categories``
            (left out when unknown).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    if not tasks:
        raise FtcotError("A rationale dataset needs at least one task.")
    task_objs = [resolve_task(t) for t in tasks]
    config = asdict(teach_config) if is_dataclass(teach_config) else dict(teach_config or {})  # type: ignore[arg-type]
    reps = yield_reports(reports)
    sources, custom, licenses = [], [], set()
    for task in task_objs:
        for source in task.provenance():
            entry = {"task": task.name, **source}
            if task.builtin:
                sources.append(entry)
            else:
                custom.append(entry | {"answer_type": task.answer_type})
        licenses.add(task.license)
    backend = config.get("teacher", "not recorded")
    named = preset(backend)
    style = config.get("trigger") or (named.trigger if named is not None else "generic")
    recorded = _is_recorded_kojima(config, reps)
    keep = config.get("keep", "correct")
    if configs is None:
        configs = [
            {"config_name": t.name, "data_files": [{"split": s, "path": f"{t.name}/{s}-*"} for s in ("train", "test")]}
            for t in task_objs
        ]
    card_data = dict(DATASET_CARD_DATA, license=licenses_of(licenses), configs=configs)
    if "other" in card_data["license"]:  # the Hub asks an "other" licence for a name and a link
        from huggingface_hub import constants

        card_data["license_name"] = OTHER_LICENSE_NAME
        # A placeholder repo id (a folder not pushed yet) gets the card's own file; a push renders the URL.
        card_data["license_link"] = (f"{constants.ENDPOINT}/datasets/{repo_id}#sources" if is_hub_id(repo_id)
                                     else "README.md#sources")  # fmt: skip
    if num_rows is not None:
        card_data["size_categories"] = [size_category(num_rows)]
    if dataset_info is not None:
        card_data["dataset_info"] = dataset_info
    ledger = "\n\n" + LEDGER_INTRO + "\n\n" + YieldReport.ledger_markdown(reps) if reps else ""
    filtered = YieldReport.filters_markdown(reps) if reps else None
    filters = "\n\n" + FILTERS_INTRO + "\n\n" + filtered if filtered else ""
    yield_table = YieldReport.markdown(reps) + filters + ledger if reps else "Not recorded."
    card = DatasetCard.from_template(
        DatasetCardData(**card_data),
        template_str=template_text(DATASET_TEMPLATE),
        example_config=configs[0]["config_name"],
        pretty_name=DATASET_CARD_DATA["pretty_name"],
        repo_id=repo_id,
        teacher=reps[0].teacher if reps else config.get("model") or backend,
        backend=PAPER_TEACHER.label if recorded else backend,
        degree=config.get("degree", reps[0].degree if reps else "not recorded"),
        temperature=reps[0].temperature if reps else config.get("temperature", "not recorded"),
        **_protocol_fields(reps, config, task_objs, style),
        keep=describe_recipe(keep, _band(config), config.get("max_rationale_student_tokens"),
                             config.get("student_tokenizer"), config.get("dedup_jaccard")),
        mode=config.get("mode", "paper"),
        yield_table=yield_table,
        decontamination=YieldReport.decontamination_markdown(reps) if reps else "Not checked.",
        sources=sources,
        custom_sources=custom,
        citation=task_objs[0].citation or PAPER_CITATION,
        replayed_citation=KOJIMA_CITATION if recorded else None,
        other_license="other" in card_data["license"],
    )
    validate_card(card, "dataset")
    return card


_PROTOCOL_TEXT = {
    "two_stage": ("the teacher answered each training question with Zero-shot-CoT (`Q: {question}\\nA: Let's think "
                  "step by step.`, then `{rationale}{answer trigger}`)", "stage-2 answer trigger", "raw stage-2 text"),
    "one_stage": ("the teacher answered each training question in one request (`Q: {question}\\n"
                  + ONE_STAGE_INSTRUCTION + "`), its answer parsed from the reply's answer line",
                  "answer line asked for", "the reply's answer line"),
}  # fmt: skip
"""Per protocol: how the card's introduction says the rationales were made, the trigger row's name, and what the
`teacher_answer` column holds."""


def _protocol_fields(reports: Sequence[Any], config: Mapping[str, Any], tasks: Sequence[Task],
                     style: str) -> dict[str, str]:  # fmt: skip
    """What the card says of the protocol the teach run used (its yield reports', else its config's): a one-stage
    chat run's card does not describe the two-stage prompt and its stage-2 trigger."""
    used = sorted({r.protocol for r in reports}) or [config.get("protocol") or "two_stage"]
    if used == ["auto"]:
        used = ["one_stage" if config.get("chat") else "two_stage"]
    protocol = used[0] if len(used) == 1 and used[0] in _PROTOCOL_TEXT else "two_stage"
    text, label, answer = _PROTOCOL_TEXT[protocol]
    trigger = (ANSWER_PHRASE if protocol == "one_stage"
               else ", ".join(sorted({t.answer_trigger(style).strip() for t in tasks})))  # fmt: skip
    return {"protocol": " + ".join(used).replace("_", "-"), "protocol_text": text, "trigger_label": label,
            "trigger": trigger, "answer_text": answer}  # fmt: skip


def folder_tasks(meta: Mapping[str, Any], names: Sequence[str]) -> list[Task]:
    """The tasks of a rationale folder: user-dataset tasks rebuilt from ``yield_report.json``, built-ins by name."""
    stored = meta.get("tasks") or {}
    return [Task.from_dict(stored[n]) if n in stored else resolve_task(n) for n in names]
