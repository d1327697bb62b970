"""The layering of hrseg (issue 14), read from the source with ``ast``: every import of every
module under hrseg/ and stages/ (module level, inside functions, under ``if TYPE_CHECKING``).

Three rules, one test each; each test prints every violation it finds, one per line, as
``file:line: what``:

* floors: a module imports its own floor or the floors below (``FLOORS``), never above;
  across packages of one floor only what ``SIDEWAYS`` allows (``engine`` and ``evaluation``
  never import each other);
* no import cycle among the modules (module-level imports), and no module imports names from
  its own package's ``__init__`` (``from hrseg.data import x`` inside hrseg/data: the package
  imports its modules, so that is a cycle waiting to happen; import ``hrseg.data.x`` itself);
* no function-level import of an hrseg module (``FUNCTION_LEVEL_ALLOWED``, a few entries). Optional
  third-party dependencies (onnxruntime, selenium, ...) may be imported in functions.

Imports by name count too: ``importlib.import_module("hrseg.x")`` with a literal, and a package's
lazy table (``_LAZY = {"name": "hrseg.pkg.module", ...}`` in its ``__init__``, read by its PEP 562
``__getattr__``), whose modules count as the package's module-level imports. Any other
``importlib.import_module(<expression>)`` must be declared in ``DYNAMIC_IMPORTS_ALLOWED``, and
a lazy table must agree with its package's ``if TYPE_CHECKING:`` imports and ``__all__``
(one more test).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: The floors, bottom to top. A module belongs to its package (``hrseg.data.custom`` ->
#: ``hrseg.data``; a package's ``__init__`` to the package itself).
FLOORS: dict[str, int] = {
    "hrseg": 0,  # hrseg/__init__.py: the version only
    "hrseg.errors": 0,
    "hrseg.io": 0,
    "hrseg.config": 0,
    "hrseg.complexity_table": 0,
    "hrseg.lazy": 0,  # the PEP 562 attribute hook of the packages with a _LAZY table  # shipped model complexity facts; no torch, so `hrseg info` answers fast
    "hrseg.models": 1,
    "hrseg.data": 1,
    "hrseg.weights": 1,
    "hrseg.recipe": 2,
    "hrseg.metrics": 2,
    "hrseg.visualize": 2,
    "hrseg.runtime": 2,
    "hrseg.engine": 3,  # training
    "hrseg.evaluation": 3,  # inference and metrics
    "hrseg.tracking": 4,
    "hrseg.cli": 5,
    "stages": 6,  # the DVC stage scripts: may import anything
}

#: Imports between different packages of one floor: only these (importer -> imported: why).
#: Everything else on one floor is independent: models, data and weights do not know each
#: other; recipe, metrics, visualize and runtime neither; engine and evaluation never.
SIDEWAYS: dict[tuple[str, str], str] = {
    ("hrseg.config", "hrseg.errors"): "ConfigError is an HrsegError",
    ("hrseg.complexity_table", "hrseg.errors"): "a malformed table is an HrsegError",
    ("hrseg.runtime", "hrseg.recipe"): "runtime.tracker builds run names, tags and params from the resolved recipe",
}

#: Function-level imports of hrseg modules that are allowed (importer -> imported: why). Keep it short.
#: (The CLI's lazy command table, ``hrseg.cli._app.HrsegGroup``, imports a command's module by a
#: name read from ``COMMANDS``; each command module then imports everything at its top, except the
#: one library function of a command that does tensor work.)
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {
    ("hrseg.cli.info", "hrseg.models.complexity"): "torch (about 2 s) only for sizes the shipped complexity table cannot answer",
    ("hrseg.cli.train", "hrseg.engine.train"): "torch only when the command runs, not for --help",
    ("hrseg.cli.evaluate", "hrseg.evaluation.evaluate"): "torch only when the command runs, not for --help",
    ("hrseg.cli.predict", "hrseg.evaluation.predict"): "torch only when the command runs, not for --help",
    ("hrseg.cli.export", "hrseg.evaluation.export"): "torch only when the command runs, not for --help",
    ("hrseg.cli._app", "hrseg.runtime.warm"): "the warm-start client (about 30 ms) only for a command that does tensor work",
}

#: Modules that call ``importlib.import_module`` with a name the walk cannot read, besides those with
#: a ``_LAZY`` table (module -> what decides the names and why that is safe).
DYNAMIC_IMPORTS_ALLOWED: dict[str, str] = {
    "hrseg.cli._app": "a command's module, from COMMANDS (every command module is hrseg.cli.<name>, floor 5)",
    "hrseg.lazy": "a module named in the calling package's _LAZY table (read and vetted here as that package's imports)",
}

#: Known violations still to remove (``rule: importer -> imported``). Empty: keep it so.
KNOWN_VIOLATIONS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str  # module name
    file: str  # relative to the repository
    line: int
    in_function: bool
    package: str | None = None  # ``from <package> import ...``: the package named


@dataclass(frozen=True)
class Violation:
    rule: str  # "upward", "sideways", "cycle", "own-package", "function-level"
    key: str  # what KNOWN_VIOLATIONS lists: "rule: importer -> imported"
    where: str  # "file:line: explanation"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = sorted((REPO / "hrseg").rglob("*.py")) + sorted((REPO / "stages").glob("*.py"))
    return {module_name(p): p for p in files}


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module name of a (possibly relative) ``from`` import's base."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _function_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function (or lambda) body."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)) or _is_import_module_call(n)}
    return inside


def imports_of(name: str, path: Path, modules: set[str]) -> list[Import]:
    """The imports of project modules in one file. ``from P import x`` imports ``P.x`` when
    that is a module, else ``P``; stage scripts import their siblings by bare name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function = _function_nodes(tree)
    rel = path.relative_to(REPO).as_posix()
    lazy = {node: table for node, table in [_lazy_table(tree, rel)] if node is not None}

    def known(target: str) -> str | None:
        if name.startswith("stages") and f"stages.{target}" in modules:
            return f"stages.{target}"
        return target if target in modules else None

    found: list[Import] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        base = None
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node.level, node.module)
            targets = [f"{base}.{alias.name}" if known(f"{base}.{alias.name}") else base for alias in node.names]
        elif _is_import_module_call(node):  # importlib.import_module("hrseg.x"): an import all the same
            targets = [node.args[0].value]
        elif node in lazy:  # a package's lazy table: imports at its first use, checked as module-level ones
            targets = list(lazy[node].values())
        for target in dict.fromkeys(targets):
            resolved = known(target)
            if resolved is None and target.startswith("hrseg."):
                raise AssertionError(f"{rel}:{node.lineno}: imports {target}, which is no module under hrseg/")
            if resolved is not None:
                found.append(Import(name, resolved, rel, node.lineno, id(node) in in_function, base))
    return found


def _is_import_module_call(node: ast.AST) -> bool:
    """``importlib.import_module("<literal>")`` (a dynamic import with a name we can read)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _lazy_table(tree: ast.Module, rel: str) -> tuple[ast.AST | None, dict[str, str]]:
    """The module-level ``_LAZY = {"name": "module", ...}`` (name -> module its ``__getattr__``
    imports), as (its node, the table); (None, {}) without one."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "_LAZY" and isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = node.value
            pairs = list(zip(value.keys, value.values)) if isinstance(value, ast.Dict) else None
            if pairs is None or not all(isinstance(x, ast.Constant) and isinstance(x.value, str) for pair in pairs for x in pair):
                raise AssertionError(f"{rel}:{node.lineno}: _LAZY must be a dict literal of str -> str (name -> module), which this test reads")
            return node, {k.value: v.value for k, v in pairs}
    return None, {}


def _dynamic_import_lines(tree: ast.AST) -> list[int]:
    """Lines of ``importlib.import_module(<not a literal>)`` calls (names the walk cannot read)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module" and not _is_import_module_call(node)
    ]


def all_imports() -> list[Import]:
    files = source_files()
    return [imp for name, path in files.items() for imp in imports_of(name, path, set(files))]


def package_of(module: str) -> str:
    """The ``FLOORS`` entry a module belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in FLOORS:
            package = ".".join(parts[:n])
            if package == "hrseg" and module != "hrseg":
                break  # a new top-level module: it needs its own entry
            return package
    raise AssertionError(f"{module} has no floor: add it (or its package) to FLOORS in {Path(__file__).name}")


def floor_violations(imports: list[Import]) -> list[Violation]:
    found = []
    for imp in imports:
        src, dst = package_of(imp.importer), package_of(imp.imported)
        if src == dst:
            continue
        upward = FLOORS[dst] > FLOORS[src]
        if upward:
            why = f"{imp.importer} (floor {FLOORS[src]}) imports {imp.imported} (floor {FLOORS[dst]}), a higher floor"
        elif FLOORS[dst] == FLOORS[src] and (src, dst) not in SIDEWAYS:
            why = f"{imp.importer} imports {imp.imported}, a package of the same floor {FLOORS[src]} (not in SIDEWAYS)"
        else:
            continue
        rule = "upward" if upward else "sideways"
        found.append(Violation(rule, f"{rule}: {imp.importer} -> {imp.imported}", f"{imp.file}:{imp.line}: {why}"))
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
            if len(component) > 1 or v in edges.get(v, ()):
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return components


def cycle_violations(imports: list[Import]) -> list[Violation]:
    module_level = [imp for imp in imports if not imp.in_function]
    edges: dict[str, set[str]] = {}
    for imp in module_level:
        edges.setdefault(imp.importer, set()).add(imp.imported)
    found = []
    for component in _cycles(edges):
        members = set(component)
        inside = [imp for imp in module_level if imp.importer in members and imp.imported in members]
        lines = "; ".join(f"{imp.file}:{imp.line} {imp.importer} -> {imp.imported}" for imp in inside)
        found.append(Violation("cycle", f"cycle: {' -> '.join(component)}", f"{inside[0].file}:{inside[0].line}: import cycle among {', '.join(component)} ({lines})"))
    return found


def own_package_violations(imports: list[Import]) -> list[Violation]:
    """``from P import ...`` in a module of package ``P``. Exempt: hrseg itself (its ``__init__``
    imports nothing; ``from hrseg import io as hio`` is the house spelling) and a package's
    ``__main__``, which runs after the package it belongs to."""
    return [
        Violation(
            "own-package",
            f"own-package: {imp.importer} -> {imp.package}",
            f"{imp.file}:{imp.line}: {imp.importer} imports from its own package {imp.package}'s __init__ (import the module {imp.imported} itself)",
        )
        for imp in imports
        if imp.package and imp.package != "hrseg" and imp.importer.startswith(f"{imp.package}.") and imp.importer != f"{imp.package}.__main__"
    ]


def function_level_violations(imports: list[Import]) -> list[Violation]:
    return [
        Violation(
            "function-level",
            f"function-level: {imp.importer} -> {imp.imported}",
            f"{imp.file}:{imp.line}: {imp.importer} imports {imp.imported} inside a function (import it at the top; break a cycle by moving code)",
        )
        for imp in imports
        if imp.in_function and imp.imported.startswith("hrseg") and (imp.importer, imp.imported) not in FUNCTION_LEVEL_ALLOWED
    ]


def _check(violations: list[Violation], rule: str) -> None:
    new = [v for v in violations if v.key not in KNOWN_VIOLATIONS]
    known = [v for v in violations if v.key in KNOWN_VIOLATIONS]
    for v in violations:
        print(f"{v.where}{'  [KNOWN_VIOLATIONS]' if v in known else ''}")
    stale = sorted(k for k in KNOWN_VIOLATIONS if k.startswith(f"{rule}:") and k not in {v.key for v in violations})
    for key in stale:
        print(f"no longer found, remove from KNOWN_VIOLATIONS: {key}")
    assert not new, f"{len(new)} {rule} violation(s):\n" + "\n".join(v.where for v in new)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_every_module_has_a_floor(imports):
    for name in source_files():
        package_of(name)
    assert any(imp.importer == "hrseg.cli._app" for imp in imports)  # the walk sees the code


def test_no_upward_or_sideways_imports(imports):
    violations = floor_violations(imports)
    _check([v for v in violations if v.rule == "upward"], "upward")
    _check([v for v in violations if v.rule == "sideways"], "sideways")


def test_no_import_cycles(imports):
    _check(cycle_violations(imports), "cycle")
    _check(own_package_violations(imports), "own-package")


def test_no_function_level_imports_of_hrseg_modules(imports):
    _check(function_level_violations(imports), "function-level")


def _type_checking_names(tree: ast.Module) -> set[tuple[str, str]]:
    """(name, module) of every ``from module import name`` under a module-level ``if TYPE_CHECKING:``."""
    return {
        (alias.asname or alias.name, imp.module or "")
        for block in tree.body
        if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
        for imp in block.body
        if isinstance(imp, ast.ImportFrom)
        for alias in imp.names
    }


def _all_names(tree: ast.Module) -> set[str]:
    """The string literals of a module-level ``__all__ = [...]``."""
    for block in tree.body:
        if isinstance(block, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in block.targets):
            return {e.value for e in getattr(block.value, "elts", ()) if isinstance(e, ast.Constant)}
    return set()


def test_lazy_tables_match_type_checking_imports_and_all():
    """A package ``__init__`` with a ``_LAZY`` table says the same three times: the table (what
    ``__getattr__`` imports), its ``if TYPE_CHECKING:`` imports (what type checkers see) and
    ``__all__``; and every other dynamic import is declared."""
    problems, tables = [], 0
    for name, path in source_files().items():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        node, table = _lazy_table(tree, rel)
        if node is None:
            if name not in DYNAMIC_IMPORTS_ALLOWED:
                why = "importlib.import_module with a name the layering test cannot read (use a literal or a _LAZY table)"
                problems += [f"{rel}:{line}: {why}" for line in _dynamic_import_lines(tree)]
            continue
        tables += 1
        if _type_checking_names(tree) != set(table.items()):
            problems.append(f"{rel}:{node.lineno}: _LAZY and the TYPE_CHECKING imports differ: {sorted(_type_checking_names(tree) ^ set(table.items()))}")
        if _all_names(tree) != set(table):
            problems.append(f"{rel}:{node.lineno}: _LAZY and __all__ differ: {sorted(_all_names(tree) ^ set(table))}")
    for problem in problems:
        print(problem)
    assert not problems
    assert tables >= 3  # hrseg.models, hrseg.data, hrseg.evaluation: the walk sees the tables


def test_the_walk_finds_what_it_should(tmp_path, monkeypatch):
    """The rules on a miniature tree: an upward (one of them through a lazy table), a sideways,
    a cyclic and a function-level import."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    files = {
        "hrseg/__init__.py": "",
        "hrseg/io.py": "from hrseg.recipe import X\n",
        "hrseg/recipe.py": "from hrseg import io\n",
        "hrseg/engine/__init__.py": "",
        "hrseg/engine/train.py": "def f():\n    from hrseg.evaluation import evaluate\n",
        "hrseg/evaluation/__init__.py": "",
        "hrseg/evaluation/evaluate.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import io\n",
        "hrseg/evaluation/predict.py": "from hrseg.evaluation import evaluate\n",
        "stages/common.py": "import hrseg.cli\n",
        "stages/train.py": "from common import x\n",
        "hrseg/cli/__init__.py": "",
        "hrseg/data/__init__.py": "_LAZY = {'Recipe': 'hrseg.recipe', 'x': 'hrseg.data.x'}\n",
        "hrseg/data/x.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    imps = all_imports()
    assert {(i.importer, i.imported) for i in imps} == {
        ("hrseg.io", "hrseg.recipe"), ("hrseg.recipe", "hrseg.io"), ("hrseg.engine.train", "hrseg.evaluation.evaluate"),
        ("hrseg.evaluation.evaluate", "hrseg.io"), ("hrseg.evaluation.predict", "hrseg.evaluation.evaluate"),
        ("stages.common", "hrseg.cli"), ("stages.train", "stages.common"), ("hrseg.data", "hrseg.recipe"), ("hrseg.data", "hrseg.data.x"),
    }  # fmt: skip
    assert not any(i.in_function for i in imps if i.importer == "hrseg.data")  # a lazy table counts as module-level imports
    assert sorted(v.key for v in floor_violations(imps)) == [
        "sideways: hrseg.engine.train -> hrseg.evaluation.evaluate", "upward: hrseg.data -> hrseg.recipe", "upward: hrseg.io -> hrseg.recipe",
    ]  # fmt: skip
    assert [v.key for v in cycle_violations(imps)] == ["cycle: hrseg.io -> hrseg.recipe"]
    assert [v.key for v in own_package_violations(imps)] == ["own-package: hrseg.evaluation.predict -> hrseg.evaluation"]
    assert [v.where for v in function_level_violations(imps)] == [
        "hrseg/engine/train.py:2: hrseg.engine.train imports hrseg.evaluation.evaluate inside a function (import it at the top; break a cycle by moving code)"
    ]
