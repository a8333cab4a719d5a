"""The layout tells the architecture: the rules docs/ARCHITECTURE.md draws, read from the source.

Every import of every module of the package is read with ``ast`` (module level and inside
functions, ``TYPE_CHECKING`` blocks included), so a rule broken anywhere fails here."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import sleepvlm_ws

PACKAGE = Path(sleepvlm_ws.__file__).parent
CORE_PACKAGES = ("base", "signals", "study", "model", "server", "trust", "review", "pipeline", "synth")
# What each core package may import from core (besides itself). sleepvlm_ws.errors, .paths and
# the package's __version__ are open to all; nothing in core imports ui or cli.
ALLOWED = {
    "base": set(),
    "signals": {"base"},
    "study": {"base", "signals"},
    "model": {"base", "signals"},
    "server": {"base", "model"},
    "trust": {"base", "signals", "study", "model"},
    "review": {"base", "signals", "study", "trust"},
    "synth": {"base", "signals", "study", "trust"},
    "pipeline": set(CORE_PACKAGES) - {"pipeline"},
}
OPEN_TO_ALL = {"sleepvlm_ws", "sleepvlm_ws.errors", "sleepvlm_ws.paths"}
# Imports that may stay inside a function: heavy or optional libraries, each with a "late:" reason.
MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(target module, line, at module level) for every import of a sleepvlm_ws module; targets
    are modules (``from pkg import mod`` names the module), else the package the name comes from."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set()
    for node in tree.body:
        top.add(id(node))
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("sleepvlm_ws"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full if full in MODULES else target), node.lineno, id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sleepvlm_ws"):
                    yield alias.name, node.lineno, id(node) in top


def _domain(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "core":
        return parts[2]
    return None


def test_every_core_module_lives_in_a_domain_package_that_says_what_it_may_import():
    core = PACKAGE / "core"
    loose = sorted(p.name for p in core.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside a domain package: {loose}"
    found = sorted(p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert found == sorted(CORE_PACKAGES)
    for name in CORE_PACKAGES:
        doc = ast.get_docstring(ast.parse((core / name / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"core/{name}/__init__.py does not say what it may import"


def test_core_packages_import_only_what_the_architecture_allows():
    broken = []
    for name, path in MODULES.items():
        here = _domain(name)
        if here is None and not name.startswith("sleepvlm_ws.core"):
            continue
        for target, line, _top in _imports(name, path):
            there = _domain(target)
            where = f"{path.relative_to(PACKAGE)}:{line} imports {target}"
            if target.startswith(("sleepvlm_ws.ui", "sleepvlm_ws.cli", "sleepvlm_ws.demo")):
                broken.append(f"{where} (core never imports the UI or the CLI)")
            elif there is None:
                if target not in OPEN_TO_ALL and target != "sleepvlm_ws.core":
                    broken.append(f"{where} (not open to core)")
            elif here is not None and there != here and there not in ALLOWED[here]:
                broken.append(f"{where} ({here} may import {sorted(ALLOWED[here]) or 'no other package'})")
    assert broken == [], "\n".join(broken)


def test_there_are_no_import_cycles():
    graph = defaultdict(set)
    for name, path in MODULES.items():
        for target, _line, _top in _imports(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    # a package's __init__ importing its own modules is the package's API, not a cycle
    for name in list(graph):
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and MODULES[t].name == "__init__.py")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(MODULES):
        if node not in state:
            visit(node, [])
    assert cycles == [], "\n".join(cycles)


def test_function_level_imports_are_heavy_or_optional_libraries_with_a_reason():
    """No workstation module is imported inside a function except where its library must load
    late; every import inside a function carries a "late:" comment saying why."""
    unexplained = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        top = set()
        for node in tree.body:
            top.add(id(node))
            if isinstance(node, (ast.If, ast.Try)):
                top.update(id(n) for n in ast.walk(node))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            # the reason sits on the import's line or on the comment/import lines right above it
            i, explained = node.lineno - 1, False
            while i >= 0:
                text = lines[i].strip()
                if "late:" in text:
                    explained = True
                    break
                if i != node.lineno - 1 and text and not text.startswith(("#", "import ", "from ")):
                    break
                i -= 1
            if not explained:
                unexplained.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == [], "\n".join(unexplained)


def test_no_module_is_over_the_size_that_says_it_holds_two_concepts():
    big = {str(p.relative_to(PACKAGE)): n for p in MODULES.values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert big == {}, big


@pytest.mark.parametrize("module", ["sleepvlm_ws.cli", "sleepvlm_ws.cli.main"])
def test_the_entry_point_loads_no_scipy_before_llama_cpp(module):
    """A CUDA build of llama.cpp segfaults at model load when scipy was imported first, so the
    entry point imports llama_cpp before anything that imports scipy (cli.main)."""
    code = f"import sys, {module}; print('scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def _public_api(path: Path) -> dict[str, list[ast.FunctionDef]]:
    """Name -> the functions that name stands for: a public function, or a public class's public
    methods (properties aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if isinstance(node, ast.FunctionDef):
            out[node.name] = [node]
        elif isinstance(node, ast.ClassDef):
            out[node.name] = [n for n in node.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
                              and not any(isinstance(d, ast.Name) and d.id == "property" for d in n.decorator_list)]
    return out


def _undocumented(fn: ast.FunctionDef) -> bool:
    if not [a for a in fn.args.args + fn.args.kwonlyargs if a.arg not in ("self", "cls")]:
        return False
    doc = ast.get_docstring(fn) or ""
    returns_none = isinstance(fn.returns, ast.Constant) and fn.returns.value is None
    return "Parameters\n----------" not in doc or (not returns_none and "Returns\n-------" not in doc)


def test_the_core_api_other_packages_use_carries_numpy_docstrings():
    """YASA's habit for the public API: a core function (or a public method of a core class)
    that another package imports says what it takes (Parameters) and what it gives (Returns,
    unless it returns None), numpy style."""
    api = {name: _public_api(path) for name, path in MODULES.items() if _domain(name)}
    missing = set()
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")
                target = ".".join(base[:len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in api or _domain(target) == _domain(name):
                continue
            for alias in node.names:
                for fn in api[target].get(alias.name, []):
                    if _undocumented(fn):
                        missing.add(f"{MODULES[target].relative_to(PACKAGE)}:{fn.lineno} {alias.name}.{fn.name}")
    assert sorted(missing) == [], "\n".join(sorted(missing))
