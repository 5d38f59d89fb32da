"""Developer sessions: ``nox -s tests lint typecheck docs examples bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (the docs and notebook tests need the docs tools too)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package, the tests and this file with ``mypy --strict``."""
    session.install("-e", ".[test]")
    session.run("mypy", "--strict")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with ``mkdocs build --strict`` (any warning fails it)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def examples(session: nox.Session) -> None:
    """Run the examples, the notebook and the docs' code blocks against FakeOllama."""
    session.install("-e", ".[test,docs]")
    session.run(
        "pytest",
        "tests/test_examples.py",
        "tests/test_notebook.py",
        "tests/test_docs.py",
        *session.posargs,
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and regenerate docs/performance.md (``-- --quick``: a short run)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "bench", *session.posargs)
