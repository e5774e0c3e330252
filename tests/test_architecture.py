"""The package's layering, checked on its source with ``ast`` (no imports are executed).

Layers, bottom to top (:data:`LAYERS`): a module may import its own layer or a lower one, never a higher
one, and no two modules (nor two packages) import each other, directly or through others. Imports at the
top of a module and inside functions both count; imports under ``if TYPE_CHECKING:`` do not (they never
run). An import of a recsys module inside a function is there only to keep a heavy optional dependency
lazy, and says so in a comment containing "lazy" (or "lazily") on its line or the line above;
the ``recsys.cli`` package states that rule once, in ``recsys/cli/__init__.py`` (its imports keep
``recsys --help`` fast).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "recsys"

# (module or package prefix, layer); the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "recsys.errors": 0,
    "recsys.version": 0,
    "recsys.utils": 1,
    "recsys.config": 2,
    "recsys.data": 3,
    "recsys.features": 4,
    "recsys.metrics": 5,
    "recsys.metrics.topk": 5,  # the one top-N and exclusion mask
    "recsys.models": 6,
    "recsys.models.scorer": 6,  # the one scorer protocol (Scores), below every method
    "recsys.meta": 7,
    # the public front
    "recsys.requests": 8,
    "recsys.candidates": 8,  # which items a request may get; the ranked output rows
    "recsys.onboarding": 8,
    "recsys.recommender": 8,
    "recsys.similar": 8,  # similar items
    "recsys.explain": 8,  # why an item is recommended
    "recsys.training": 8,  # the recipe of ColdStartRecommender.fit
    "recsys.post_training": 8,  # its step 7: the paths' weights chosen on validation users
    "recsys.added_paths": 8,  # step 7.2: the classical ranking paths added after training
    "recsys.persistence": 8,  # its model folders and checkpoints
    "recsys.catalogue": 8,  # catalogue updates without retraining
    "recsys.known_users": 8,  # the record of the training users, recommendations by user id
    # applications of the front
    "recsys.evaluation": 9,
    "recsys.evaluation.cells": 9,
    "recsys.tracking": 9,
    "recsys.workflows": 9,
    "recsys.distributed": 9,
    "recsys.cli": 10,
    "recsys.__main__": 10,
    "recsys": 10,  # the package root: lazy re-exports of the front (see recsys/__init__.py)
}

LAZY_EXEMPT = {"recsys.cli"}
"""Modules (and packages: their modules too) whose in-function imports are explained once, at the top
of the module or of the package."""


def _lazy_exempt(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in LAZY_EXEMPT)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def _package_of(module: str) -> str:
    """``recsys.data.tasks`` -> ``recsys.data``; top-level modules are their own package."""
    return ".".join(module.split(".")[:2])


class _Import:
    def __init__(self, source: str, target: str, line: int, in_function: bool) -> None:
        self.source, self.target, self.line, self.in_function = source, target, line, in_function

    def __repr__(self) -> str:
        where = "in a function" if self.in_function else "at module level"
        return f"{self.source}:{self.line} imports {self.target} ({where})"


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def recsys_imports(module: str, path: Path, known: set[str]) -> list[_Import]:
    """Every import of a recsys module by ``module`` (``from recsys.x import y`` counts as ``recsys.x.y``
    when that is a module, else ``recsys.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[_Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base_name = ".".join(base + ([child.module] if child.module else []))
                else:
                    base_name = child.module or ""
                for alias in child.names:
                    sub = f"{base_name}.{alias.name}"
                    targets.append(sub if sub in known else base_name)
            for target in dict.fromkeys(targets):
                if target == "recsys" or target.startswith("recsys."):
                    out.append(_Import(module, target, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


def _all_imports() -> list[_Import]:
    modules = _modules()
    known = set(modules)
    return [imp for name, path in modules.items() for imp in recsys_imports(name, path, known)]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_every_module_has_a_layer() -> None:
    assert "recsys.data.tasks" in _modules()  # the walk finds the package
    for module in _modules():
        assert isinstance(layer_of(module), int), module


def test_no_module_imports_a_higher_layer() -> None:
    upward = [imp for imp in _all_imports() if layer_of(imp.target) > layer_of(imp.source)]
    assert upward == [], "imports of a higher layer:\n" + "\n".join(map(repr, upward))


def test_there_is_no_import_cycle_between_modules_or_packages() -> None:
    imports = _all_imports()
    modules: dict[str, set[str]] = {}
    packages: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.source:
            modules.setdefault(imp.source, set()).add(imp.target)
        src, dst = _package_of(imp.source), _package_of(imp.target)
        if src != dst and imp.source != "recsys":
            packages.setdefault(src, set()).add(dst)
    assert _cycles(modules) == [], _cycles(modules)
    assert _cycles(packages) == [], _cycles(packages)


def test_the_layer_check_sees_upward_and_in_function_imports(tmp_path: Path) -> None:
    """The checker itself: an upward import inside a function is found, a TYPE_CHECKING one is not."""
    fake = tmp_path / "recsys" / "data" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from recsys.recommender import ColdStartRecommender\n"
        "def f():\n    from recsys.meta import maml\n"
    )
    found = recsys_imports("recsys.data.fake", fake, {"recsys.meta.maml"})
    assert [(i.target, i.in_function) for i in found] == [("recsys.meta.maml", True)]
    assert layer_of(found[0].target) > layer_of("recsys.data.fake")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _comment_says_lazy(lines: list[str], line: int) -> bool:
    near = " ".join(lines[max(0, line - 2) : line]).lower()
    return "#" in near and ("lazy" in near or "lazily" in near)


def test_in_function_imports_of_recsys_modules_say_which_dependency_they_keep_lazy() -> None:
    modules = _modules()
    missing = []
    for imp in _all_imports():
        if not imp.in_function or _lazy_exempt(imp.source):
            continue
        lines = modules[imp.source].read_text(encoding="utf-8").splitlines()
        if not _comment_says_lazy(lines, imp.line):
            missing.append(imp)
    assert missing == [], "in-function imports without a 'lazy' comment:\n" + "\n".join(map(repr, missing))


MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_no_file_in_the_package_is_over_500_lines_and_long_functions_say_why() -> None:
    """Files stay readable; a function over 80 lines states in its docstring why it is long."""
    root = Path(__file__).resolve().parents[1] / "recsys"
    long_files, long_functions = [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(root)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES and "Long on purpose" not in (ast.get_docstring(node) or ""):
                    long_functions.append(
                        f"{path.relative_to(root)}:{node.lineno} {node.name} ({size} lines)"
                    )
    assert not long_files, long_files
    assert not long_functions, long_functions
