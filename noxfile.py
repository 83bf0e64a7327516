"""Development sessions: `nox` runs lint, typecheck and tests; `nox -s bench` the benchmarks,
`nox -s soak` the soak."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
SOURCES = ["triosock", "tests", "benchmarks", "noxfile.py"]


def _install_group(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against an installed copy of the package."""
    _install_group(session, "test")
    session.install(".")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check (with the ASYNC rules) and ruff format --check."""
    _install_group(session, "lint")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and this file."""
    _install_group(session, "typing")
    session.install(".")
    session.run("mypy", "triosock", "tests", "noxfile.py")


@nox.session(default=False)
def soak(session: nox.Session) -> None:
    """The soak: real servers under load and faults (``nox -s soak -- --quick`` in CI)."""
    _install_group(session, "bench")
    session.install(".")
    session.run("python", "-m", "benchmarks.soak", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks side by side; extra arguments pass through (``nox -s bench -- --quick``)."""
    _install_group(session, "bench")
    session.install(".")
    session.run("python", "-m", "benchmarks.run", *session.posargs)
