"""No ``Any`` in a public signature or module seam (issue 16): what crosses a module boundary
says what it is. JSON from outside is ``Mapping[str, object]`` narrowed member by member, what
mtlscore builds to serialise a ``mtlscore.types.JSONObject``, keys are cryptography's key
types, third-party objects are Protocols.

Read from the source with :mod:`ast`: every annotation of a public function or method (its
parameters and return), a public class's fields, and a public module-level name (annotated,
or a type alias). Public: no underscore in the module's path, the class or the name (dunder
methods such as ``__init__`` are public signatures).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mtlscore

PACKAGE_DIR = Path(mtlscore.__file__).resolve().parent

# The places where Any is the honest type, each with why.
ALLOWED = {
    "mtlscore.integrations.authlib:BoundClient.__getattr__->":
        "a transparent proxy: the application's client model has whatever attributes it has",
    "mtlscore.runtimes.uvicorn_tls:DeferredTLSProtocol.__init__(app_state)":
        "overrides uvicorn's protocol constructor, whose app_state is dict[str, Any]",
}


def _mentions_any(node: ast.AST | None) -> bool:
    if node is None:
        return False
    for n in ast.walk(node):
        if (isinstance(n, ast.Name) and n.id == "Any") or (isinstance(n, ast.Attribute) and n.attr == "Any"):
            return True
        if isinstance(n, ast.Constant) and isinstance(n.value, str):  # a quoted annotation
            try:
                inner = ast.parse(n.value, mode="eval")
            except SyntaxError:
                continue
            if _mentions_any(inner):
                return True
    return False


def _public(name: str, *, dunder: bool = False) -> bool:
    return not name.startswith("_") or (dunder and name.startswith("__") and name.endswith("__"))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a module or class body, through ``if``/``try`` (``if TYPE_CHECKING:``)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _statements(node.body)
            yield from _statements(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _statements(part)
        else:
            yield node


def _function(f: ast.FunctionDef | ast.AsyncFunctionDef, qual: str) -> Iterator[str]:
    a = f.args
    for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]:
        if _mentions_any(arg.annotation):
            yield f"{qual}({arg.arg})"
    if _mentions_any(f.returns):
        yield f"{qual}->"


def _alias(node: ast.AnnAssign) -> bool:
    ann = node.annotation
    return (isinstance(ann, ast.Name) and ann.id == "TypeAlias") or (
        isinstance(ann, ast.Constant) and ann.value == "TypeAlias")


def _scope(body: list[ast.stmt], prefix: str, in_class: bool) -> Iterator[str]:
    for node in _statements(body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if _public(node.name, dunder=in_class):
                yield from _function(node, prefix + node.name)
        elif isinstance(node, ast.ClassDef):
            if _public(node.name):
                yield from _scope(node.body, f"{prefix}{node.name}.", True)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _public(node.target.id) and (
                _mentions_any(node.annotation) or (_alias(node) and _mentions_any(node.value))
            ):
                yield prefix + node.target.id
        elif isinstance(node, ast.Assign) and not in_class:  # a type alias written as X = ...
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any(_public(n) for n in names) and _mentions_any(node.value):
                yield f"{prefix}{names[0]}="


def public_any(path: Path, module: str) -> list[str]:
    """``module:place`` for each public annotation of ``path`` that mentions Any."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{module}:{place}" for place in _scope(tree.body, "", False)]


def public_modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent)
        if any(p.startswith("_") and p not in ("__init__.py", "__main__.py") for p in rel.parts):
            continue
        out.append((path, ".".join(rel.with_suffix("").parts)))
    return out


def test_no_any_in_a_public_signature() -> None:
    found = [hit for path, module in public_modules() for hit in public_any(path, module)]
    assert [hit for hit in found if hit not in ALLOWED] == []
    # An allowance whose Any has gone is removed with it.
    assert sorted(set(ALLOWED) - set(found)) == []


def test_the_checker_finds_any_where_it_is_public(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text(
        "from typing import Any, TypeAlias\nimport typing\n"
        "Table = dict[str, Any]\n"
        "Alias: TypeAlias = 'list[Any]'\n"
        "_private: Any = None\n"
        "def f(a: int, *args: Any, key: 'Mapping[str, Any]', **kw: object) -> typing.Any: ...\n"
        "def _g(a: Any) -> Any: ...\n"
        "class C:\n"
        "    field: Any\n"
        "    _hidden: Any\n"
        "    def __init__(self, x: Any) -> None: ...\n"
        "    def _helper(self, x: Any) -> None: ...\n"
        "    def ok(self, x: object) -> dict[str, object]: ...\n"
        "class _D:\n"
        "    def f(self, x: Any) -> None: ...\n"
        "if True:\n"
        "    def h() -> list[Any]: ...\n"
    )
    assert public_any(mod, "m") == [
        "m:Table=", "m:Alias", "m:f(key)", "m:f(args)", "m:f->", "m:C.field", "m:C.__init__(x)", "m:h->",
    ]
