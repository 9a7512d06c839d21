"""What a teacher name means, resolved once (``TeacherSpec``), and backends from outside the package: ``--teacher
module:Class`` and the ``ftcot_hf.teachers`` entry point group."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.teach import TeachConfig
from ftcot_hf.teachers import (
    PAPER_TEACHER,
    TEACHERS,
    Teacher,
    TeacherSpec,
    build_teacher,
    register_teacher,
    teacher_spec,
)
from tests.doubles import exits_2_in_one_line, installed_entry_point, user_teach_argv

# A backend module of a user's own, outside ftcot_hf: the tests' EchoTeacher with the from_config contract.
PLUGIN = '''
from tests.doubles import EchoTeacher


class FileTeacher(EchoTeacher):
    backend = ""  # set from the name it is reached by

    def __init__(self, guess_offset: int = 0):
        super().__init__()
        self.guess_offset = guess_offset

    @classmethod
    def from_config(cls, *, model=None, base_url=None, tasks=(), data_dir=None, guess_offset: int = 0):
        return cls(guess_offset)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> Iterator[str]:
    """A module ``my_ftcot_teachers`` importable from a folder outside the package; the registry restored after."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_ftcot_teachers.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    before = list(TEACHERS)
    yield "my_ftcot_teachers"
    for name in list(TEACHERS):
        if name not in before:
            TEACHERS.unregister(name)


def test_a_backend_from_a_file_outside_the_package_teaches_from_the_cli(plugin, arith_jsonl, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(user_teach_argv(arith_jsonl, out, "--teacher", f"{plugin}:FileTeacher")) == 0, capsys.readouterr().err
    assert any(out.glob("my_arith/train-*.parquet"))
    from datasets import load_dataset

    rows = load_dataset("parquet", data_files=str(out / "my_arith" / "train-*.parquet"))["train"]
    assert rows.num_rows > 0 and all("I think it is" in r for r in rows["rationale"])
    spec = teacher_spec(f"{plugin}:FileTeacher")
    assert spec.cls.__name__ == "FileTeacher" and spec.cls.backend == f"{plugin}:FileTeacher" and not spec.recorded


def test_a_backend_by_entry_point(plugin, tmp_path, monkeypatch, arith_jsonl, capsys):
    """An installed package declares ``[project.entry-points."ftcot_hf.teachers"] filed = "mod:Class"``."""
    site = installed_entry_point(tmp_path / "site", "ftcot_hf.teachers", "filed", f"{plugin}:FileTeacher")
    monkeypatch.syspath_prepend(str(site))
    import ftcot_hf.teachers as teachers

    monkeypatch.setattr(teachers, "_entry_points_read", False)
    assert "filed" in teachers.teacher_names()
    out = tmp_path / "out"
    assert main(user_teach_argv(arith_jsonl, out, "--teacher", "filed")) == 0, capsys.readouterr().err
    assert any(out.glob("my_arith/train-*.parquet"))


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        ("no_such_module_xyz:T", "cannot import 'T' from module 'no_such_module_xyz'"),
        ("json:dumps", "must be a subclass of ftcot_hf.Teacher"),
        ("opneai", "Did you mean 'openai'?"),
    ],
)
def test_a_bad_teacher_name_is_one_line(teacher, message, arith_jsonl, tmp_path, capsys):
    exits_2_in_one_line(user_teach_argv(arith_jsonl, tmp_path / "out", "--teacher", teacher), capsys, message)


def test_unknown_and_mistyped_options_of_a_declared_backend(plugin, arith_jsonl, tmp_path, capsys):
    name = f"{plugin}:FileTeacher"
    assert teacher_spec(name).cls.option_types() == {"guess_offset": int}
    args = user_teach_argv(arith_jsonl, tmp_path / "out", "--teacher", name, "--teacher_kwargs", '{"guess_ofset": 1}')
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "takes no option guess_ofset (did you mean guess_offset?)" in err and "it takes: guess_offset" in err
    args[-1] = '{"guess_offset": "one"}'
    assert main(args) == 2
    assert "guess_offset must be an integer" in capsys.readouterr().err
    # the recorded preset's backend declares its options too (no **kwargs): the same one line
    with pytest.raises(FtcotError, match=r"takes no option sorce \(did you mean source\?\).*it takes: .*replay_file"):
        build_teacher(TeachConfig(teacher="text-davinci-002", teacher_kwargs={"sorce": 1}), ["coin_flip"])


def test_the_preset_is_a_spec_read_by_fields():
    spec = teacher_spec("text-davinci-002")
    assert spec is PAPER_TEACHER and isinstance(spec, TeacherSpec)
    assert (spec.backend, spec.trigger, spec.keep_truncated, spec.recorded) == ("replay", "kojima", True, True)
    live = teacher_spec("openai")
    assert (live.backend, live.trigger, live.keep_truncated, live.preset) == ("openai", "generic", False, False)
    assert not live.recorded and teacher_spec("replay").recorded


@pytest.mark.parametrize(
    ("backend", "model", "base_url", "message"),
    [
        ("openai", None, ["http://x/v1"], "The openai teacher needs --teacher_model"),
        ("openai", "m", None, "The openai teacher needs --base_url"),
        ("openai_batch", "m", None, "The openai_batch teacher needs --base_url"),
        ("transformers", None, None, "The transformers teacher needs --teacher_model (a Hub id"),
    ],
)
def test_each_backend_checks_its_own_flags(backend, model, base_url, message):
    with pytest.raises(FtcotError) as e:
        teacher_spec(backend).cls.check_flags(model=model, base_url=base_url)
    assert message in str(e.value)
    teacher_spec(backend).cls.check_flags(model="m", base_url=["http://x/v1"])  # both given: nothing to say


def test_register_teacher_checks_the_base_class():
    with pytest.raises(FtcotError, match="'not_a_teacher' must be a subclass of ftcot_hf.Teacher"):
        register_teacher("not_a_teacher")(dict)
    assert "not_a_teacher" not in TEACHERS
    assert issubclass(TEACHERS["replay"], Teacher)


def test_every_register_function_checks_its_base_type_and_the_base_types_are_exported():
    import ftcot_hf
    from ftcot_hf.errors import PluginTypeError
    from ftcot_hf.students.formats import FORMATS
    from ftcot_hf.tasks import TASKS
    from ftcot_hf.tasks.answers import ANSWER_TYPES

    for call, registry in [(lambda: ftcot_hf.register_task("coin_flip"), TASKS),
                           (lambda: ftcot_hf.register_format({"name": "mine"}), FORMATS),
                           (lambda: ftcot_hf.register_answer_type(int), ANSWER_TYPES)]:  # fmt: skip
        before = list(registry)
        with pytest.raises(PluginTypeError, match=f"must be an? \\w+ of ftcot_hf.{registry.base.__name__}, not"):
            call()
        assert list(registry) == before
        assert getattr(ftcot_hf, registry.base.__name__) is registry.base
    assert ftcot_hf.Teacher is TEACHERS.base and isinstance(PluginTypeError("x"), TypeError)
