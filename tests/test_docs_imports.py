"""Every mtlscore name the README and docs/*.md use still exists where they say (issue #16).

Two sources: ``from mtlscore… import …`` / ``import mtlscore…`` statements in
fenced python blocks, and dotted ``mtlscore.a.b`` references anywhere in the
text (prose, tables, code). Each is resolved by importing; a name that only
resolves through the deprecation shim of ``mtlscore.__getattr__`` counts as
wrong (the docs must name its new home).
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
IMPORT_LINE = re.compile(r"^[ \t]*(from\s+mtlscore[\w.]*\s+import\s+(?:\([^)]*\)|[^\n]*)|import\s+mtlscore[\w.]*[^\n]*)", re.M)
# A dotted reference, not inside a string literal ("mtlscore.peer" is an ASGI extension key) and
# not the config file name.
DOTTED = re.compile(r"(?<![\"'\w/.-])mtlscore(?:\.[A-Za-z_]\w*)+")
NOT_CODE = frozenset({"mtlscore.toml"})


def imports_in(block: str) -> list[tuple[str, str | None]]:
    """(module, name) pairs of the mtlscore imports of a python block (name None for ``import m``)."""
    out: list[tuple[str, str | None]] = []
    for statement in IMPORT_LINE.findall(block):
        tree = ast.parse(statement.strip())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                out += [(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                out += [(a.name, None) for a in node.names]
    return out


def resolve(module: str, name: str | None) -> object:
    """Import ``module`` and get ``name`` (a member or a submodule); DeprecationWarning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        mod = importlib.import_module(module)
        if name is None:
            return mod
        try:
            return getattr(mod, name)
        except AttributeError:
            return importlib.import_module(f"{module}.{name}")


def resolve_dotted(ref: str) -> object:
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = resolve(".".join(parts[:cut]), None)
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(ref)


def doc_imports() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text(encoding="utf-8")):
            found += [(doc.name, m, n) for m, n in imports_in(block)]
    return sorted(set(found), key=str)


def doc_references() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        for ref in DOTTED.findall(doc.read_text(encoding="utf-8")):
            ref = ref.rstrip(".")
            if ref not in NOT_CODE:
                found.add((doc.name, ref))
    return sorted(found)


IMPORTS = doc_imports()
REFERENCES = doc_references()


def test_the_docs_are_read() -> None:
    assert ("README.md", "mtlscore", "Validator") in IMPORTS
    assert ("guide.md", "mtlscore.jwt", "verify_bound_token") in IMPORTS
    assert any(doc == "proxy.md" for doc, _ in REFERENCES)
    assert len(IMPORTS) > 20


@pytest.mark.parametrize(("doc", "module", "name"), IMPORTS, ids=lambda v: str(v))
def test_every_import_in_the_docs_works(doc: str, module: str, name: str | None) -> None:
    resolve(module, name)


@pytest.mark.parametrize(("doc", "ref"), REFERENCES, ids=lambda v: str(v))
def test_every_dotted_name_in_the_docs_exists(doc: str, ref: str) -> None:
    resolve_dotted(ref)


def test_a_moved_or_missing_name_fails() -> None:
    # The checks must be able to fail: a name moved out of the top level, a typo, a private module gone.
    with pytest.raises(DeprecationWarning):
        resolve("mtlscore", "parse_xfcc")
    with pytest.raises(ModuleNotFoundError):
        resolve("mtlscore", "no_such_name")
    with pytest.raises(AttributeError):
        resolve_dotted("mtlscore._validator.Validator")
    with pytest.raises(AttributeError):
        resolve_dotted("mtlscore.proxy.no_such_helper")
    with pytest.raises(DeprecationWarning):
        resolve_dotted("mtlscore.gcp_headers")
    assert imports_in("from mtlscore import (\n    TrustStore,\n    Validator,\n)\nimport mtlscore.jwt\n") == [
        ("mtlscore", "TrustStore"), ("mtlscore", "Validator"), ("mtlscore.jwt", None)
    ]
