"""The package's layout: a folder per stage, each importing only the floors below it (ARCHITECTURE.md's Layout).

Every import of every module counts, those inside functions too (a lazy import is an arrow all the same); the lazy
public API of ``ftcot_hf/__init__.py`` and the plug-ins are loaded by name (``importlib``), not imported, so they
are no arrows here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "ftcot_hf"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("utils", "registry", "plugins"),
    ("tasks",),
    ("students",),
    ("teachers",),
    ("teach",),
    ("evaluation",),
    ("training", "metrics", "rewards"),
    ("hub",),
    ("pipeline",),
    ("cli",),
)
"""Lowest first; a part may import the parts of lower floors only. Evaluation sits below training: a training run
scores each epoch with evaluate_student (training/callbacks.py), and nothing of evaluation trains."""

TOP_LEVEL_MODULES = {"__init__", "cli", "errors", "registry", "plugins", "rewards"}
"""The only modules beside the stage folders: the public API, the command line, and what every floor shares."""

FLOOR = {part: floor for floor, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str | None = None) -> list[tuple[str, int]]:
    """(absolute module or ``module.name``, line) of every import in the file, at any depth (``name``: the file's
    module, where it does not lie in the package)."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(target, line) for target, line in out if target == "ftcot_hf" or target.startswith("ftcot_hf.")]


def _part(module: str) -> str | None:
    """The folder or top-level module a dotted name lies in (``ftcot_hf.teach.card.x`` -> ``teach``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _arrows() -> dict[tuple[str, str], list[str]]:
    """(from part, to part) -> the ``file:line`` of each import between two parts."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part(_module_name(path))
        if source is None:  # ftcot_hf/__init__.py: the lazy public API names modules (it imports only utils/lazy.py)
            continue
        for target, line in _imports(path):
            to = _part(target)
            if to is not None and to != source and to in FLOOR:
                arrows.setdefault((source, to), []).append(f"{path.relative_to(REPO_ROOT)}:{line}")
    return arrows


def test_every_part_of_the_package_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or
             (p.is_dir() and (p / "__init__.py").is_file())} - {"__init__"}  # fmt: skip
    assert parts == set(FLOOR), f"unplaced: {sorted(parts - set(FLOOR))}, gone: {sorted(set(FLOOR) - parts)}"


def test_no_loose_module_beside_the_stage_folders():
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose == TOP_LEVEL_MODULES, f"move {sorted(loose - TOP_LEVEL_MODULES)} into the folder of its stage"


def test_every_import_runs_down_the_floors():
    upward = {
        f"{a} -> {b}": where for (a, b), where in _arrows().items() if FLOOR[a] <= FLOOR[b]
    }  # fmt: skip
    assert not upward, f"imports that run up (or sideways) the floors of tests/test_layout.py: {upward}"


def test_the_folder_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    for a, b in _arrows():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        cycle = visit(start, []) if start not in state else None
        assert cycle is None, " -> ".join(cycle)


def _module_files() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _file_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import name``: ``pkg.name`` where that is a module,
    else ``pkg``), at any depth, ``TYPE_CHECKING`` imports included. A package's ``__init__`` is left out, as source
    and as target: it lends its folder's names by name (``importlib``, no arrow), and re-exports what it imports."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "ftcot_hf" or path.name == "__init__.py":
            continue
        for target, _ in _imports(path, name):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and modules[target].name != "__init__.py":
                graph.setdefault(name, set()).add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of the graph (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path = [*path, node]
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, path)):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_the_file_graph_has_no_cycle():
    """No two files import each other, however far round (a lazy import or a type-only one is an arrow too): a
    circle is broken by moving what both need to the lower file, or to a small module of its own."""
    cycle = _cycle(_file_graph(_module_files()))
    assert cycle is None, "files that import each other: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "injected",
    [
        "\n\ndef _injected():\n    from ftcot_hf.tasks.task import Task\n\n    return Task\n",
        "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from ftcot_hf.tasks.task import Task\n",
    ],
    ids=["lazy", "type-only"],
)
def test_the_file_cycle_check_finds_an_injected_cycle(tmp_path, injected):
    """The check itself: tasks/task.py imports tasks/answers.py; answers.py importing task.py back (inside a
    function, or under TYPE_CHECKING) is a circle it reports."""
    modules = _module_files()
    answers = tmp_path / "answers.py"
    answers.write_text(modules["ftcot_hf.tasks.answers"].read_text(encoding="utf-8") + injected, encoding="utf-8")
    assert _cycle(_file_graph(modules)) is None
    cycle = _cycle(_file_graph(modules | {"ftcot_hf.tasks.answers": answers}))
    assert cycle is not None and cycle[0] == cycle[-1], cycle
    assert {"ftcot_hf.tasks.answers", "ftcot_hf.tasks.task"} <= set(cycle), cycle


def test_the_check_sees_lazy_imports_and_the_folders_of_dotted_names():
    """The check itself: an import inside a function counts, and ``from ftcot_hf.teach import x`` is ``teach``'s."""
    imports = dict(_imports(PACKAGE / "teach" / "ray_data.py"))
    assert any(t.startswith("ftcot_hf.teach.merge") for t in imports)  # imported inside RayRationaleAugmenter
    assert _part("ftcot_hf.teach.card.render_dataset_card") == "teach" and _part("ftcot_hf.errors") == "errors"
