"""The public namespaces: ``mtlscore`` holds what an embedder needs; helpers sit in their layer's package."""

from __future__ import annotations

import importlib
import warnings

import pytest

import mtlscore

PACKAGES = ("mtlscore.x509", "mtlscore.verify", "mtlscore.revocation", "mtlscore.identity",
            "mtlscore.decision", "mtlscore.proxy")


@pytest.mark.parametrize("package", ["mtlscore", *PACKAGES])
def test_every_exported_name_exists_without_a_warning(package: str) -> None:
    module = importlib.import_module(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in module.__all__:
            assert getattr(module, name) is not None, name
    assert sorted(module.__all__) == sorted(set(module.__all__))


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from mtlscore import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(mtlscore.__all__)


@pytest.mark.parametrize("name", sorted(mtlscore.MOVED))
def test_a_moved_name_still_resolves_with_a_warning_naming_its_home(name: str) -> None:
    home = importlib.import_module(mtlscore.MOVED[name])
    assert name in home.__all__ and name not in mtlscore.__all__
    with pytest.warns(DeprecationWarning, match=rf"mtlscore\.{name} moved to {home.__name__}\.{name}"):
        value = getattr(mtlscore, name)
    assert value is getattr(home, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        mtlscore.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(mtlscore, "_validator")  # the pre-layout private modules are gone
