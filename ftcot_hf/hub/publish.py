"""Publish to the Hugging Face Hub: the rationale dataset (one config per task) and a student, each with its card.

``ftcot push`` (``hub/cli.py``) and ``push_to_hub=True`` in a run config both end here. Everything goes through
``huggingface_hub``'s client (and ``datasets``' ``push_to_hub``), so the Hub endpoint is ``HF_ENDPOINT`` and the token
is the ``token`` argument, else ``huggingface_hub.get_token()`` (``HF_TOKEN`` or ``hf auth login``). The token is
passed to the client only: it is never logged, printed, or written into a card or a file.

The cards are rendered by their stages (:func:`ftcot_hf.teach.card.render_dataset_card`,
:func:`ftcot_hf.training.card.render_model_card`, from ``ftcot_hf/templates/``) and their YAML metadata is validated
locally (:func:`ftcot_hf.utils.card.validate_card`): it must survive a ``DatasetCardData`` / ``ModelCardData`` round
trip.

Example::

    from ftcot_hf.hub import push_rationales, push_student

    push_rationales("outputs/rationales", "me/ftcot-rationales", private=True)
    push_student("outputs/run/student", "me/smollm2-coin-flip", base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                 dataset_repo="me/ftcot-rationales", task="coin_flip", format="ft_cot",
                 recipe={"epochs": 2, "learning_rate": 1e-4}, results={"accuracy": 0.887, "n": 150})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import get_format
from ftcot_hf.teach.card import folder_tasks, render_dataset_card, scrub_config, yield_reports
from ftcot_hf.training.card import render_model_card
from ftcot_hf.training.outputs import recorded_card_values
from ftcot_hf.utils.export import write_parquet_configs
from ftcot_hf.utils.scrub import redact

if TYPE_CHECKING:
    from datasets import DatasetDict
    from huggingface_hub import HfApi


logger = logging.getLogger(__name__)

# Training leftovers and files we write ourselves are not uploaded from a student folder.
STUDENT_IGNORE = (
    "checkpoint-*", "runs", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "scaler.pt", "training_args.bin",
    "trainer_state.json", "README.md", "generation_config.json", "ftcot_student.json", ".git", ".gitattributes",
    "*.tmp", "__pycache__", "stage.json",
)  # fmt: skip
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")


# -- what a push returns ---------------------------------------------------------------------------------------------
class PushResult(str):
    """The URL of what was pushed (a ``str``: ``.../tree/<revision>`` for a branch) with what a user needs next:
    the repo, the revision, the commit and its URL. :meth:`summary` is what ``ftcot push`` (and a run) prints."""

    repo_id: str
    repo_type: str
    revision: str
    commit_oid: str | None
    commit_url: str | None
    load_hint: str

    def __new__(
        cls, url: str, *, repo_id: str, repo_type: str, revision: str | None = None, commit_oid: str | None = None,
        commit_url: str | None = None, load_hint: str = "",
    ) -> PushResult:  # fmt: skip
        self = super().__new__(cls, url)
        self.repo_id, self.repo_type, self.revision = repo_id, repo_type, revision or "main"
        self.commit_oid, self.commit_url, self.load_hint = commit_oid, commit_url, load_hint
        return self

    def __getnewargs_ex__(self) -> tuple[tuple[str], dict[str, Any]]:  # pickle and copy keep the attributes
        return (self.url,), dict(vars(self))

    @property
    def url(self) -> str:
        return str.__str__(self)

    def summary(self) -> str:
        """``Pushed the <kind> <repo> to <url>`` then the revision and commit (with its URL), and how to load it."""
        kind = "rationale dataset" if self.repo_type == "dataset" else "student"
        commit = f", commit {self.commit_oid[:10]} ({self.commit_url})" if self.commit_oid else ""
        lines = [f"Pushed the {kind} {self.repo_id} to {self.url}", f"  revision {self.revision}{commit}"]
        return "\n".join(lines + ([f"  load: {self.load_hint}"] if self.load_hint else []))


# -- token and errors -------------------------------------------------------------------------------------------------
def resolve_token(token: str | None = None) -> str:
    """The token to publish with: ``token``, else ``huggingface_hub.get_token()`` (``HF_TOKEN`` or a login)."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise FtcotError(
            "No Hugging Face token: log in with `hf auth login` or set HF_TOKEN (a token with write access)."
        )
    return token


def check_repo_id(repo_id: str) -> None:
    """A Hub repo id the Hub would refuse fails here, in one line naming it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise FtcotError(
            f"Hub repo id {repo_id!r} is not valid ({e}); use owner/name, e.g. you/ftcot-coin_flip."
        ) from None


def check_push_access(repo_ids: list[str], token: str | None = None) -> None:
    """Before a run's work: a token is there, the Hub accepts it, and each repo id is well formed, so a publishing
    run never fails after hours of teaching and training (the repos themselves are created at push time)."""
    for repo_id in repo_ids:
        check_repo_id(repo_id)
    api = _api(resolve_token(token))
    with _hub_errors("check the Hugging Face token"):
        api.whoami()


@contextlib.contextmanager
def _hub_errors(action: str) -> Iterator[None]:
    """Turn client exceptions into one actionable line (messages carry URLs and request ids, never the token)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except OfflineModeIsEnabled as e:
        raise FtcotError(f"Cannot {action}: HF_HUB_OFFLINE is set. Unset it to publish.") from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if status == 401:
            raise FtcotError(
                f"Cannot {action}: the Hub rejected the token (401). Log in again (`hf auth login`) or fix HF_TOKEN."
            ) from e
        if status == 403:
            raise FtcotError(
                f"Cannot {action}: the token has no write access there (403). Use a write token, or a namespace "
                "you own."
            ) from e
        raise FtcotError(f"Cannot {action}: {first}") from e
    except OSError as e:  # connection refused, DNS, timeouts (httpx errors are not OSError: see below)
        raise FtcotError(f"Cannot {action}: {e}") from e
    except Exception as e:
        if type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            from huggingface_hub import constants

            raise FtcotError(f"Cannot {action}: could not reach {constants.ENDPOINT} ({e}).") from e
        raise


def _api(token: str) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(token=token, library_name="ftcot-hf")


def _full_repo_id(api: HfApi, repo_id: str) -> str:
    """``name`` -> ``<user>/name`` (datasets needs the namespace); checks the token at the same time."""
    with _hub_errors("check the Hugging Face token"):
        user = api.whoami()["name"]
    return repo_id if "/" in repo_id else f"{user}/{repo_id}"


def _prepare_repo(api: HfApi, repo_id: str, repo_type: str, private: bool, revision: str | None) -> str:
    """Create the repo (private when asked) and the branch ``revision``; returns the repo's URL."""
    with _hub_errors(f"create the {repo_type} repo {repo_id}"):
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if private and api.repo_info(repo_id, repo_type=repo_type).private is False:
            logger.warning("%s already exists and is public; it stays public", repo_id)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    return str(url) + (f"/tree/{revision}" if revision not in (None, "main") else "")


# -- the rationale dataset --------------------------------------------------------------------------------------------
def _rationale_folder(folder: Path) -> tuple[dict[str, Path], list[dict[str, Any]], dict[str, Any]]:
    """Files (path in repo -> local file), YAML ``configs`` and yield_report.json of a ``save_rationales`` folder."""
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard

    readme = folder / "README.md"
    if not readme.is_file():
        raise FtcotError(
            f"{folder} is not a rationale dataset folder (no README.md): pass the output_dir of `ftcot teach`."
        )
    configs = DatasetCard.load(readme).data.to_dict().get("configs") or []
    if not configs:
        raise FtcotError(f"{readme} has no `configs:` in its YAML header; regenerate the folder with `ftcot teach`.")
    files: dict[str, Path] = {}
    for entry in configs:
        for item in entry.get("data_files", []):
            matches = sorted(folder.glob(item["path"]))
            if not matches:
                raise FtcotError(f"{readme} lists {item['path']} (config {entry['config_name']}), which is missing.")
            for file in matches:
                try:
                    rows = pq.read_metadata(file).num_rows
                except Exception as e:  # noqa: BLE001 -- any unreadable file: say which
                    raise FtcotError(f"{file} is not a readable Parquet file ({e}); regenerate the folder.") from e
                logger.info("%s: %d rows", file.relative_to(folder), rows)
                files[file.relative_to(folder).as_posix()] = file
    report_file = folder / "yield_report.json"
    meta = json.loads(report_file.read_text()) if report_file.is_file() else {}
    if not meta:
        logger.warning("%s has no yield_report.json: the card will not show the teacher settings", folder)
    return files, configs, meta


def push_rationales(
    source: str | os.PathLike | Mapping[str, DatasetDict],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    teach_config: Mapping[str, Any] | Any | None = None,
    reports: Sequence[Any] | None = None,
) -> PushResult:
    """Push a rationale dataset: one config per task (train/test splits as Parquet), its card and yield report.

    Everything goes in ONE commit: the Parquet files under ``{task}/`` (the layout ``Dataset.push_to_hub`` uses),
    ``README.md`` (the card, whose YAML ``configs:`` lists each task's files) and ``yield_report.json``; files left
    under a pushed task's folder by an earlier push are deleted in the same commit. ``Dataset.push_to_hub`` cannot
    do this: its card update refuses splits whose features differ, and a rationale config's train split (rationale
    columns) and test split (the task's columns) always do. ``load_dataset(repo_id, task)`` reads the result.

    Args:
        source: a folder written by :func:`ftcot_hf.teach.save_rationales`, or ``{task: DatasetDict}``.
        repo_id: ``owner/name`` (``name`` alone: the token's user).
        private: create the repo private (an existing repo keeps its visibility).
        revision: a branch to push to (created from ``main`` when missing).
        token: default ``huggingface_hub.get_token()``.
        commit_message: default "Upload Fine-tune-CoT rationales (<tasks>)".
        teach_config, reports: what the card shows (teacher, D, T, filter, yield); a folder has them in its
            ``yield_report.json``.

    Returns:
        A :class:`PushResult`: the dataset's URL (``.../tree/<revision>`` for a branch) with the revision, commit
        and its URL.

    Raises:
        FtcotError: no token or a rejected one, not a rationale folder, the Hub unreachable or refusing.
    """
    import pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    with tempfile.TemporaryDirectory(prefix="ftcot_push_") as tmp:
        if isinstance(source, Mapping):
            if not source:
                raise FtcotError("Nothing to push: no task configs.")
            files, configs = write_parquet_configs(Path(tmp), source)
            meta: dict[str, Any] = {}
        else:
            files, configs, meta = _rationale_folder(Path(source))
        config = teach_config if teach_config is not None else meta.get("config")
        config = asdict(config) if is_dataclass(config) else dict(config or {})  # type: ignore[arg-type]
        reps = yield_reports(reports if reports is not None else meta.get("reports"))
        tasks = [c["config_name"] for c in configs]
        task_objs = folder_tasks(meta, tasks)

        token = resolve_token(token)
        api = _api(token)
        repo_id = _full_repo_id(api, repo_id)
        rows = sum(pq.read_metadata(file).num_rows for file in files.values())  # readable: checked above
        card = render_dataset_card(task_objs, repo_id=repo_id, teach_config=config, reports=reps, configs=configs,
                                   num_rows=rows)  # fmt: skip
        url = _prepare_repo(api, repo_id, "dataset", private, revision)
        operations: list[Any] = [CommitOperationAdd(path, str(file)) for path, file in files.items()]
        operations.append(CommitOperationAdd("README.md", str(card).encode()))
        if config or reps:
            report = redact({"config": scrub_config(config), "reports": [r.to_dict() for r in reps],
                             "tasks": meta.get("tasks") or {}})  # fmt: skip
            operations.append(CommitOperationAdd("yield_report.json", (json.dumps(report, indent=2) + "\n").encode()))
        with _hub_errors(f"push the rationales to {repo_id}"):
            existing = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
            stale = [p for p in existing if p.split("/", 1)[0] in tasks and "/" in p and p not in files]
            operations += [CommitOperationDelete(p) for p in stale]
            logger.info("Pushing %d files (%s) to %s", len(files), ", ".join(tasks), repo_id)
            commit = api.create_commit(
                repo_id,
                operations,
                commit_message=commit_message or f"Upload Fine-tune-CoT rationales ({', '.join(tasks)})",
                repo_type="dataset",
                revision=revision,
            )
    rev = "" if revision in (None, "main") else f", revision={revision!r}"
    hint = f"load_dataset({repo_id!r}, {tasks[0]!r}{rev})"
    return PushResult(url, repo_id=repo_id, repo_type="dataset", revision=revision, commit_oid=commit.oid,
                      commit_url=commit.commit_url, load_hint=hint)  # fmt: skip


# -- the student ------------------------------------------------------------------------------------------------------
def student_generation_config(model_dir: str | Path, format: str = "ft_cot") -> tuple[Any, dict[str, Any]]:
    """The student's generation config with END stopping, and a summary of what was set.

    When ``" END"`` is one token, its id joins ``eos_token_id``: ``generate()`` then stops there with no extra
    argument (also in pipelines). Otherwise ``stop_strings=[" END"]`` is set, which transformers only applies when
    ``generate`` is given ``tokenizer=``.
    """
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    model_dir = Path(model_dir)
    stop = get_format(format).stop
    try:
        if (model_dir / "generation_config.json").is_file():
            gen = GenerationConfig.from_pretrained(model_dir)
        else:
            gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise FtcotError(f"Cannot read the model or tokenizer in {model_dir}: {str(e).splitlines()[0]}") from e
    eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    summary: dict[str, Any] = {"end_token_id": None, "stop_strings": None}
    if stop:
        ids = tokenizer.encode(f" {stop}", add_special_tokens=False)
        if len(ids) == 1:
            if ids[0] not in eos_ids:
                eos_ids.append(ids[0])
            summary["end_token_id"] = ids[0]
        else:
            gen.stop_strings = [f" {stop}"]
            summary["stop_strings"] = [f" {stop}"]
    gen.eos_token_id = eos_ids if len(eos_ids) != 1 else eos_ids[0]
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    summary["eos_token_id"] = gen.eos_token_id
    return gen, summary


def _check_student_folder(model_dir: Path) -> bool:
    """Raise unless ``model_dir`` holds a model (config + weights) and a tokenizer; returns is_encoder_decoder."""
    if not model_dir.is_dir():
        raise FtcotError(f"Student folder {model_dir} does not exist.")
    names = {p.name for p in model_dir.iterdir()}
    is_adapter = "adapter_config.json" in names
    if "config.json" not in names and not is_adapter:
        raise FtcotError(f"{model_dir} has no config.json: pass the folder the trained student was saved to.")
    if not (names & set(WEIGHT_FILES) or any(n.endswith(".safetensors") for n in names)):
        raise FtcotError(f"{model_dir} has no weights ({', '.join(WEIGHT_FILES)}).")
    if not names & set(TOKENIZER_FILES):
        raise FtcotError(f"{model_dir} has no tokenizer files: save the tokenizer beside the model.")
    if "config.json" in names:
        return bool(json.loads((model_dir / "config.json").read_text()).get("is_encoder_decoder"))
    return False


def _without_local_paths(text: str, model_dir: Path) -> str:
    """A JSON file's text with the absolute paths of this machine removed: the student folder (and its training
    folder, ``.<name>.partial``) become ``.``, other absolute paths their last component."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    roots = {str(model_dir.resolve()), str(model_dir.resolve().parent / f".{model_dir.name}.partial")}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value):
            for root in roots:
                if value == root or value.startswith(root + os.sep):
                    return "." + value[len(root) :]
            return Path(value).name
        return value

    cleaned = clean(data)
    return text if cleaned == data else json.dumps(cleaned, indent=2) + "\n"


def stage_student(model_dir: Path, staging: Path) -> list[str]:
    """Link (or copy) the files of a student folder that are pushed into ``staging``; JSON summaries are written
    without this machine's paths; training leftovers and run-internal files stay behind."""
    import fnmatch

    copied = []
    for path in sorted(model_dir.iterdir()):
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in STUDENT_IGNORE) or not path.is_file():
            continue
        if path.suffix == ".json" and path.stat().st_size < 1_000_000:  # summaries: no local paths leave the machine
            text = path.read_text(encoding="utf-8")
            scrubbed = _without_local_paths(text, model_dir)
            if scrubbed != text:
                (staging / path.name).write_text(scrubbed, encoding="utf-8")
                copied.append(path.name)
                continue
        try:
            os.link(path, staging / path.name)  # no copy of gigabytes when on the same filesystem
        except OSError:
            shutil.copy2(path, staging / path.name)
        copied.append(path.name)
    return copied


def push_student(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    base_model: str,
    task: str,
    format: str = "ft_cot",
    recipe: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | Any | None = None,
    dataset_repo: str | None = None,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    license: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Push a trained student: weights, tokenizer, a generation config that stops at END, and its model card.

    Training leftovers (``checkpoint-*``, optimizer states, ``trainer_state.json``...) are not uploaded. See
    :func:`render_model_card` for the card arguments and :func:`push_rationales` for ``private``/``revision``/
    ``token``.

    Returns:
        A :class:`PushResult`: the model's URL (``.../tree/<revision>`` for a branch), revision, commit.
    """
    model_dir = Path(model_dir)
    enc_dec = _check_student_folder(model_dir)
    if recipe is None or license is None:  # what `ftcot train` recorded: its recipe, the base model's licence
        recorded = recorded_card_values(model_dir, base_model)
        recipe, license = recipe or recorded["recipe"], license or recorded["license"]
    token = resolve_token(token)
    gen, stopping = student_generation_config(model_dir, format)
    api = _api(token)
    repo_id = _full_repo_id(api, repo_id)
    card = render_model_card(
        repo_id,
        base_model=base_model,
        task=task,
        format=format,
        recipe=recipe,
        results=results,
        dataset_repo=dataset_repo,
        license=license,
        encoder_decoder=enc_dec,
        stopping=stopping,
    )
    url = _prepare_repo(api, repo_id, "model", private, revision)
    with tempfile.TemporaryDirectory(prefix="ftcot_push_") as tmp:
        staging = Path(tmp)
        files = stage_student(model_dir, staging)
        gen.save_pretrained(staging)
        card.save(staging / "README.md")
        logger.info("Pushing %s (%s + generation_config.json, README.md) to %s", model_dir, ", ".join(files), repo_id)
        with _hub_errors(f"upload the student to {repo_id}"):
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                repo_type="model",
                revision=revision,
                commit_message=commit_message or f"Upload Fine-tune-CoT student for {task}",
            )
    rev = "" if revision in (None, "main") else f", revision={revision!r}"
    hint = f"AutoModelFor{'Seq2SeqLM' if enc_dec else 'CausalLM'}.from_pretrained({repo_id!r}{rev})"
    return PushResult(url, repo_id=repo_id, repo_type="model", revision=revision, commit_oid=commit.oid,
                      commit_url=commit.commit_url, load_hint=hint)  # fmt: skip

