"""The sans-IO core imports no I/O module and reads no clock (DESIGN.md §8, STYLE.md §1, §10).

The core is every module of the mtlscore package except ``runtimes/``,
``asgi*.py``, ``cli.py``, ``_cmd_*.py`` and ``config.py``. Imports are read from
the source with :mod:`ast` (nothing is imported), and mtlscore-internal imports
are followed recursively, so a core module cannot reach I/O through an
excluded module either.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

import mtlscore

PACKAGE_DIR = Path(mtlscore.__file__).resolve().parent
FORBIDDEN = frozenset(
    {"socket", "ssl", "asyncio", "trio", "anyio", "threading", "time", "urllib", "http",
     "subprocess", "selectors"}
)
EXCLUDED = ("runtimes/*", "asgi*.py", "cli.py", "_cmd_*.py", "config.py")
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_core(path: Path) -> bool:
    rel = path.relative_to(PACKAGE_DIR).as_posix()
    return not any(fnmatch.fnmatch(rel, pattern) for pattern in EXCLUDED)


def core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if _is_core(p))


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "mtlscore":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                return True
    return False


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int


def imports_of(path: Path, own: str | None = None) -> list[Import]:
    """Absolute module names imported at run time by ``path`` (TYPE_CHECKING blocks excluded).

    ``own`` is the module's dotted name (for relative imports); by default from its path.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    own = own or _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            out += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.append(Import(base, node.lineno))
            # ``from . import _headers``: the names may be submodules.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if _module_file(sub) is not None:
                    out.append(Import(sub, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append(Import(node.args[0].value, node.lineno))
    return out


def forbidden_reached(start: Path) -> list[str]:
    """Every forbidden import reachable from ``start`` through mtlscore-internal imports."""
    problems: list[str] = []
    seen: set[Path] = set()
    stack: list[tuple[Path, tuple[str, ...]]] = [(start, (_module_name(start),))]
    while stack:
        path, trail = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        for imp in imports_of(path):
            top = imp.module.split(".")[0]
            if top in FORBIDDEN:
                problems.append(f"{' -> '.join(trail)} imports {imp.module} (line {imp.line})")
            target = _module_file(imp.module)
            if target is not None and target not in seen:
                stack.append((target, (*trail, _module_name(target))))
    return problems


def clock_calls(path: Path, label: str | None = None) -> list[str]:
    """``datetime.now()``/``utcnow()``/``today()`` calls, however datetime was imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # Names bound to the datetime module or its datetime/date classes.
    clocky = {"datetime", "date"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "datetime":
            clocky.update(a.asname or a.name for a in node.names if a.name in ("datetime", "date"))
        elif isinstance(node, ast.Import):
            clocky.update(a.asname or a.name for a in node.names if a.name == "datetime")
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in CLOCK_CALLS:
            continue
        owner = node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        if owner_name in clocky:
            found.append(f"{label or _module_name(path)} line {node.lineno}: {ast.unparse(node)}")
    return found


CORE = core_modules()


def test_the_core_is_found() -> None:
    names = {_module_name(p) for p in CORE}
    for expected in ("mtlscore._validator", "mtlscore._path", "mtlscore._cert", "mtlscore._checks"):
        assert expected in names
    assert "mtlscore.cli" not in names and "mtlscore.config" not in names
    assert not any(n.startswith("mtlscore.runtimes") for n in names)


@pytest.mark.parametrize("path", CORE, ids=_module_name)
def test_core_module_imports_no_io(path: Path) -> None:
    assert forbidden_reached(path) == []


@pytest.mark.parametrize("path", CORE, ids=_module_name)
def test_core_module_reads_no_clock(path: Path) -> None:
    assert clock_calls(path) == []


def test_the_walker_catches_what_it_must(tmp_path: Path) -> None:
    # The checker itself must be able to fail: feed it a module that does everything wrong.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import socket\nfrom http import client\nimport urllib.request as u\n"
        "from datetime import datetime as dt\nimport datetime\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ssl\n"
        "def f():\n    import time\n    return dt.now(), datetime.datetime.utcnow()\n"
        "import importlib\nimportlib.import_module('asyncio')\n"
    )
    mods = {i.module for i in imports_of(bad, own="mtlscore.bad")}
    assert {"socket", "http", "urllib.request", "time", "asyncio"} <= mods
    assert "ssl" not in mods  # type-checking only: never imported at run time
    assert len(clock_calls(bad, label="bad")) == 2


def test_relative_imports_are_followed(tmp_path: Path) -> None:
    mod = tmp_path / "mod.py"
    mod.write_text("from . import _cert\nfrom ._names import name_key\nfrom .runtimes import x\n")
    mods = {i.module for i in imports_of(mod, own="mtlscore.mod")}
    assert {"mtlscore._cert", "mtlscore._names", "mtlscore.runtimes"} <= mods
