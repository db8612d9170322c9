"""The ``mtlscore`` command (one module per subcommand). Entry point: :func:`main`."""

from .main import main

__all__ = ["main"]
