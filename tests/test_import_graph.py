"""The layering of src/lora_nlg (issues 12 and 15): the model and the data stage import nothing of training,
decoding or the demo; decoding imports nothing of training; and no module imports itself through a circle. Every
import counts, also those inside functions; only `if TYPE_CHECKING:` blocks do not run."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "lora_nlg"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, (ast.Name, ast.Attribute)) and \
        (getattr(node.test, "id", None) or getattr(node.test, "attr", None)) == "TYPE_CHECKING"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports. `from lora_nlg import x` means module lora_nlg.x when there is one;
    the implicit import of a parent package by its submodules is not an edge (Python runs the parent first)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"), str(path))]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in found if m in modules and m != me}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(SRC.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def stage(graph: dict[str, set[str]], name: str) -> set[str]:
    """The subpackage `lora_nlg.<name>` and every module under it."""
    package = f"{PACKAGE}.{name}"
    return {m for m in graph if m == package or m.startswith(package + ".")}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_is_found():
    graph = import_graph()
    assert "lora_nlg.model.weights" in graph["lora_nlg.model.gpt2"]
    assert "lora_nlg.model.network" in graph["lora_nlg.model.weights"]
    assert "lora_nlg.run_dir" in graph["lora_nlg.decode.stage"]
    assert "lora_nlg.decode.search" in graph["lora_nlg.decode.stage"]
    assert "lora_nlg.data.readers" in graph["lora_nlg.data.stage"]
    assert "lora_nlg.train.setup" in graph["lora_nlg.train.loop"]


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_network_knows_nothing_of_files():
    assert not reachable(import_graph(), "lora_nlg.model.network") & {"lora_nlg.model.weights", "lora_nlg.model.gpt2"}


# A stage may use the stages to its left, never those to its right: the model and the data are what training,
# decoding and the demo are built from, and a trained adapter is decoded without the training code.
@pytest.mark.parametrize("lower, later", [("model", ("train", "decode", "demo")), ("data", ("train", "decode", "demo")),
                                          ("decode", ("train",))])
def test_a_stage_imports_nothing_of_a_later_one(lower, later):
    graph = import_graph()
    modules, forbidden = stage(graph, lower), set().union(*(stage(graph, name) for name in later))
    assert len(modules) >= 3 and all(stage(graph, name) for name in later)
    for module in sorted(modules):
        assert not reachable(graph, module) & forbidden, f"{module} imports {sorted(reachable(graph, module) & forbidden)}"


def test_a_forbidden_edge_is_found():
    graph = {"lora_nlg.data": set(), "lora_nlg.data.stage": {"lora_nlg.atomic"}, "lora_nlg.atomic": {"lora_nlg.train.x"},
             "lora_nlg.train": set(), "lora_nlg.train.x": set()}
    assert stage(graph, "data") == {"lora_nlg.data", "lora_nlg.data.stage"}
    assert reachable(graph, "lora_nlg.data.stage") & stage(graph, "train") == {"lora_nlg.train.x"}


def test_a_circle_is_reported():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
