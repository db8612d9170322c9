"""The layers of mtlscore, enforced from the source (STYLE.md §1, §10, docs/architecture.md).

Two rules, both structural (by package, not by file name):

* The sans-IO core -- :mod:`mtlscore.reasons`, :mod:`mtlscore.types` and the packages ``x509``,
  ``verify``, ``revocation``, ``identity``, ``decision``, ``proxy``,
  ``gateway``, plus ``jwt.py``, ``pki.py`` and ``oauth.py`` -- imports no I/O module
  (``urllib.parse`` is pure and allowed) and reads no clock.
* No module imports a module of a higher layer (``LAYERS`` below, lowest
  first); packages in one layer do not import each other.

Imports are read from the source with :mod:`ast` (nothing is imported), and
mtlscore-internal imports are followed recursively, so a core module cannot
reach I/O through a module outside the core either.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import mtlscore

PACKAGE_DIR = Path(mtlscore.__file__).resolve().parent

# Lowest first. A module may import its own package and any package of a lower layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"mtlscore.reasons", "mtlscore.types"}),
    frozenset({"mtlscore.x509"}),
    frozenset({"mtlscore.verify"}),
    frozenset({"mtlscore.revocation", "mtlscore.identity"}),
    frozenset({"mtlscore.decision", "mtlscore.jwt", "mtlscore.pki"}),
    frozenset({"mtlscore.proxy"}),
    frozenset({"mtlscore.gateway"}),
    frozenset({"mtlscore.config", "mtlscore.oauth"}),
    frozenset({"mtlscore.runtimes", "mtlscore.asgi", "mtlscore.integrations"}),
    frozenset({"mtlscore.cli"}),
    frozenset({"mtlscore", "mtlscore.__main__"}),  # the public facade
)
CORE_UNITS = frozenset(
    {"mtlscore.reasons", "mtlscore.types", "mtlscore.x509", "mtlscore.verify", "mtlscore.revocation",
     "mtlscore.identity", "mtlscore.decision", "mtlscore.proxy", "mtlscore.gateway", "mtlscore.jwt", "mtlscore.pki", "mtlscore.oauth"}
)
FORBIDDEN = frozenset(
    {"socket", "ssl", "asyncio", "trio", "anyio", "threading", "time", "urllib", "http",
     "subprocess", "selectors", "select", "signal", "os", "shutil", "tempfile", "multiprocessing",
     "concurrent"}
)
ALLOWED = frozenset({"urllib.parse"})
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})
# What reads or touches the file system, called or handed on as a function (``read =
# pathlib.Path.read_bytes``): a path may be computed in the core, never opened there.
FILE_ACCESS = frozenset(
    {"open", "read_bytes", "read_text", "write_bytes", "write_text", "iterdir", "glob", "rglob", "exists",
     "is_file", "is_dir", "stat", "lstat", "touch", "unlink", "mkdir", "rmdir", "readlink", "expanduser",
     "samefile", "chmod"}
)


def unit_of(module: str) -> str:
    """The layer unit (a subpackage or a top-level module) that ``module`` belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_of(module: str) -> int:
    unit = unit_of(module)
    for n, units in enumerate(LAYERS):
        if unit in units:
            return n
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def core_modules() -> list[Path]:
    return [p for p in all_modules() if unit_of(_module_name(p)) in CORE_UNITS]


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


def imports_of(path: Path, own: str | None = None, *, type_checking: bool = False) -> list[Import]:
    """Absolute module names imported by ``path``, at run time only unless ``type_checking``.

    ``own`` is the module's dotted name (for relative imports); by default from its path.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    own = own or _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and not type_checking and _in_type_checking(node, parents):
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
            if imp.module.split(".")[0] in FORBIDDEN and not any(
                imp.module == a or imp.module.startswith(a + ".") for a in ALLOWED
            ):
                problems.append(f"{' -> '.join(trail)} imports {imp.module} (line {imp.line})")
            target = _module_file(imp.module)
            if target is not None and target not in seen:
                stack.append((target, (*trail, _module_name(target))))
    return problems


def layer_violations(path: Path, own: str | None = None) -> list[str]:
    """Imports of ``path`` (type-only ones included) that reach a higher layer or a sibling package."""
    own = own or _module_name(path)
    mine, my_layer = unit_of(own), layer_of(own)
    problems = []
    for imp in imports_of(path, own, type_checking=True):
        # ``from .. import pki`` names the root package only to reach a submodule (listed on its own).
        if not imp.module.startswith("mtlscore.") or unit_of(imp.module) == mine:
            continue
        if layer_of(imp.module) >= my_layer:
            problems.append(f"{own} (layer {my_layer}) imports {imp.module} (layer {layer_of(imp.module)}, line {imp.line})")
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


def file_access(path: Path, label: str | None = None) -> list[str]:
    """Calls of ``open()`` and uses of file-system methods (``.read_bytes``, ``.exists`` ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute) and node.attr in FILE_ACCESS:
            name = node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            name = "open"
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "resolve"
              and not node.args):
            name = "resolve"  # Path.resolve() reads symbolic links (IdentityMap.resolve(identity) is no file)
        if name is not None:
            found.append(f"{label or _module_name(path)} line {node.lineno}: {ast.unparse(node)}")
    return found


CORE = core_modules()
ALL = all_modules()


def test_the_core_is_found() -> None:
    names = {_module_name(p) for p in CORE}
    for expected in ("mtlscore.decision.validator", "mtlscore.verify.path", "mtlscore.x509.cert",
                     "mtlscore.gateway.session", "mtlscore.proxy.headers", "mtlscore.identity.rules",
                     "mtlscore.revocation.crl", "mtlscore.reasons"):
        assert expected in names
    assert "mtlscore.config" not in names and "mtlscore.asgi" not in names
    assert not any(n.startswith(("mtlscore.runtimes", "mtlscore.cli")) for n in names)


def test_every_package_is_in_a_layer() -> None:
    # A new subpackage must be placed in LAYERS (and so in or out of the core) on purpose.
    for path in ALL:
        layer_of(_module_name(path))


@pytest.mark.parametrize("path", CORE, ids=_module_name)
def test_core_module_imports_no_io(path: Path) -> None:
    assert forbidden_reached(path) == []


@pytest.mark.parametrize("path", CORE, ids=_module_name)
def test_core_module_reads_no_clock(path: Path) -> None:
    assert clock_calls(path) == []


@pytest.mark.parametrize("path", CORE, ids=_module_name)
def test_core_module_reads_no_files(path: Path) -> None:
    # Files named in the configuration are read by config loading, which hands the core their contents.
    assert file_access(path) == []


@pytest.mark.parametrize("path", ALL, ids=_module_name)
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    assert layer_violations(path) == []


def test_the_walker_catches_what_it_must(tmp_path: Path) -> None:
    # The checker itself must be able to fail: feed it a module that does everything wrong.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import socket\nfrom http import client\nimport urllib.request as u\nimport urllib.parse\n"
        "from datetime import datetime as dt\nimport datetime\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ssl\n"
        "def f():\n    import time\n    return dt.now(), datetime.datetime.utcnow()\n"
        "import importlib\nimportlib.import_module('asyncio')\n"
    )
    mods = {i.module for i in imports_of(bad, own="mtlscore.bad")}
    assert {"socket", "http", "urllib.request", "time", "asyncio"} <= mods
    assert "ssl" not in mods  # type-checking only: never imported at run time
    assert "ssl" in {i.module for i in imports_of(bad, own="mtlscore.bad", type_checking=True)}
    assert len(clock_calls(bad, label="bad")) == 2
    reader = tmp_path / "reader.py"
    reader.write_text(
        "import pathlib\nread = pathlib.Path.read_bytes\ndata = open('x', 'rb')\n"
        "def f(p, m, i):\n    return p.read_text(), p.with_suffix('.pem').name, (p / 'x').resolve(), m.resolve(i)\n"
    )
    assert sorted(line.partition(": ")[2] for line in file_access(reader, label="reader")) == sorted([
        "pathlib.Path.read_bytes", "open('x', 'rb')", "p.read_text", "(p / 'x').resolve()"])


def test_urllib_parse_is_allowed_and_io_is_found_through_other_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "mtlscore"
    (pkg / "x509").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "x509" / "__init__.py").write_text("")
    (pkg / "x509" / "pure.py").write_text("import urllib.parse\nfrom . import leaky\n")
    (pkg / "x509" / "leaky.py").write_text("import urllib.request\n")
    monkeypatch.setitem(globals(), "PACKAGE_DIR", pkg)
    problems = forbidden_reached(pkg / "x509" / "pure.py")
    assert problems == ["mtlscore.x509.pure -> mtlscore.x509.leaky imports urllib.request (line 1)"]


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    low = tmp_path / "low.py"
    low.write_text(
        "from ..reasons import Reason\nfrom .cert import Certificate\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..decision.verdict import Verdict\n"
        "def f():\n    from ..gateway import session\n"
    )
    problems = layer_violations(low, own="mtlscore.x509.low")
    # The type-only import counts (the layer would know its caller), and so does a lazy one.
    assert problems == [
        "mtlscore.x509.low (layer 1) imports mtlscore.decision.verdict (layer 4, line 5)",
        "mtlscore.x509.low (layer 1) imports mtlscore.gateway (layer 6, line 7)",
        "mtlscore.x509.low (layer 1) imports mtlscore.gateway.session (layer 6, line 7)",
    ]
    sibling = tmp_path / "sib.py"
    sibling.write_text("from ..identity.identity import Identity\n")
    assert layer_violations(sibling, own="mtlscore.revocation.sib") != []  # siblings stay apart
    assert layer_violations(sibling, own="mtlscore.decision.sib") == []


def test_relative_imports_are_followed(tmp_path: Path) -> None:
    mod = tmp_path / "mod.py"
    mod.write_text("from .x509 import cert\nfrom .x509.names import name_key\nfrom .runtimes import x\n")
    mods = {i.module for i in imports_of(mod, own="mtlscore.mod")}
    assert {"mtlscore.x509.cert", "mtlscore.x509.names", "mtlscore.runtimes"} <= mods


def test_docs_architecture_names_every_package_and_module() -> None:
    # docs/architecture.md is the map of the tree: every layer unit is in its table, and
    # every module it names as a package's key module exists.
    import re

    text = (PACKAGE_DIR.parent.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| `")]
    named = {row[1].strip() for row in rows}
    for units in LAYERS:
        for unit in units - {"mtlscore", "mtlscore.__main__"}:
            short = unit.removeprefix("mtlscore.")
            path = PACKAGE_DIR / short
            label = f"`{short}/`" if path.is_dir() else f"`{short}.py`"
            assert any(label in cell for cell in named), f"{label} is not in docs/architecture.md"
    for row in rows:
        package = row[1].strip().strip("`").rstrip("/")
        for module in re.findall(r"`(\w+)\*?`", row[3]):
            if (PACKAGE_DIR / package).is_dir():
                found = list((PACKAGE_DIR / package).glob(f"{module}*.py"))
                assert found, f"docs/architecture.md names {package}/{module}, which does not exist"
