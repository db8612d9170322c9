"""The ``mtlscore`` command assembly: every command registered, a missing optional extra is one line."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtlscore import pki

# The module, not the ``mtlscore.cli.main`` function the package re-exports under the same name.
cli_main = importlib.import_module("mtlscore.cli.main")

OPTIONAL = ("joserfc", "trio", "OpenSSL", "uvicorn", "starlette", "hypercorn")


def run_without(blocked: tuple[str, ...], argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``mtlscore argv`` in a fresh interpreter where importing any of ``blocked`` fails."""
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n    sys.modules[name] = None  # import raises ModuleNotFoundError\n"
        "from mtlscore.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_every_command_module_is_registered() -> None:
    # Each module of mtlscore.cli that declares a COMMAND is a subcommand: none forgotten in main.
    package = importlib.import_module("mtlscore.cli")
    modules = [importlib.import_module(f"mtlscore.cli.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    declared = {m.COMMAND.name for m in modules if hasattr(m, "COMMAND")}
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(declared) == sorted(c.name for c in cli_main.COMMANDS)
    assert {"check", "thumbprint", "identity", "serve", "demo"} <= set(sub.choices)


def test_a_missing_extra_is_one_line_naming_it() -> None:
    # The demo issues a certificate-bound token: it needs joserfc (the jwt extra).
    proc = run_without(("joserfc",), ["demo"])
    assert proc.returncode == 2
    assert proc.stderr == 'mtlscore demo: needs joserfc, which is not installed: pip install "mtlscore[jwt]"\n'
    assert proc.stdout == ""


def test_the_core_commands_need_no_extra(tmp_path: Path) -> None:
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pki.root().leaf("CN=no-extras").pem)
    proc = run_without(OPTIONAL, ["thumbprint", str(leaf)])
    assert proc.returncode == 0, proc.stderr
    assert "x5t#S256" in proc.stdout
    assert run_without(OPTIONAL, ["--help"]).returncode == 0


@pytest.mark.parametrize(("missing", "extra"), [("trio.lowlevel", "trio"), ("OpenSSL.SSL", "gateway")])
def test_any_command_that_hits_a_missing_extra_names_it(
    missing: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    parser = cli_main.build_parser
    monkeypatch.setattr(cli_main, "build_parser", lambda: _with_func(parser(), "thumbprint", run))
    assert cli_main.main(["thumbprint", "x.pem"]) == 2
    top = missing.partition(".")[0]
    assert capsys.readouterr().err == (
        f'mtlscore thumbprint: needs {top}, which is not installed: pip install "mtlscore[{extra}]"\n'
    )


def test_a_missing_module_that_is_not_an_extra_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken install or a typo in an import is a bug to see, not a hint to pip install something.
    def run(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'mtlscore.nothing'", name="mtlscore.nothing")

    parser = cli_main.build_parser
    monkeypatch.setattr(cli_main, "build_parser", lambda: _with_func(parser(), "thumbprint", run))
    with pytest.raises(ModuleNotFoundError):
        cli_main.main(["thumbprint", "x.pem"])


def _with_func(parser: argparse.ArgumentParser, command: str, func: object) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices[command].set_defaults(func=func)
    return parser
