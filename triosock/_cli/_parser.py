"""argparse, the way the command line wants it.

* A mistake in the command line is one line on stderr, ``PROG: error: ... (see PROG
  --help)``, and status 2: not argparse's usage block over several lines.
* ``--config FILE`` (where a command has it) reads a TOML file whose keys are the
  command's long options (``tcp = "0.0.0.0:7070"``, ``max-connections = 500``,
  ``web-origin = ["http://chat.lan:7072"]``, ``udp = "none"``); the file's options go
  before the command line's, so what is typed wins (a repeatable option gets both).
* A command's options and arguments come in any order (``echo send HOST:PORT --timeout
  1 hello``), and an unknown option is reported by the command it was given to, not by
  the top-level parser with its top-level usage.
* Commands under a parser are added with :meth:`Parser.add_commands` and
  :meth:`Parser.add_command`; every parsed namespace carries ``usage_parser``, the
  parser of the command it ran, so that a mistake found after parsing is reported by
  that command too.

Only argparse's public API is used: each parser records the options it adds (whether
one takes a value, whether it repeats) for the config file, rather than read argparse's
private tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CommandParser", "Parser", "record"]

R = TypeVar("R", bound="DataclassInstance")


def record(kind: type[R], args: argparse.Namespace, **given: Any) -> R:
    """The settings record ``kind`` (a dataclass) of a parsed command: each field is
    the parsed option of its name, unless ``given`` has it (what needs more than the
    option: a tuple for a list, a record of its own)."""
    values = {
        field.name: given[field.name] if field.name in given else getattr(args, field.name)
        for field in dataclasses.fields(kind)
        if field.init
    }
    return kind(**values)


@dataclass(frozen=True)
class _Option:
    takes_value: bool
    repeats: bool


def _config_path(args: Sequence[str]) -> str | None:
    path = None
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--config" and index + 1 < len(args):
            path = args[index + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return path


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, that reads ``--config``, and
    that has commands under it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before argparse's own __init__, which adds --help through add_argument.
        self._known_options: dict[str, _Option] = {}
        self._add_command: Callable[..., Parser] | None = None
        super().__init__(*args, **kwargs)
        # The deepest parser's default wins: the command that was run.
        self.set_defaults(usage_parser=self)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_argument(self, *names: Any, **options: Any) -> argparse.Action:
        action = super().add_argument(*names, **options)
        option = _Option(action.nargs != 0, options.get("action") == "append")
        for name in action.option_strings:
            self._known_options[name] = option
        return action

    def add_config_option(self, example: str) -> None:
        """``--config FILE``; ``example`` is a line of such a file for this command
        (``max-connections = 500``), shown in the help."""
        self.add_argument(
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,
            help="read options from this TOML file: its keys are the long options without "
            f"the dashes ({example}); the command line overrides it",
        )

    def add_commands(self, *, leaf: bool, required: bool = True, **options: Any) -> None:
        """Commands under this parser (``metavar``, ``prog`` as argparse takes them);
        ``leaf``: they are commands that run (:class:`CommandParser`), not services
        with commands of their own."""
        commands = self.add_subparsers(
            dest="action" if leaf else "service",
            required=required,
            parser_class=CommandParser if leaf else Parser,
            **options,
        )
        self._add_command = commands.add_parser

    def add_command(self, name: str, **options: Any) -> Parser:
        """The parser of a new command ``name`` under this one (``help``, ``description``,
        ``usage`` as argparse takes them)."""
        if self._add_command is None:
            raise RuntimeError(f"{self.prog} has no commands: call add_commands first")
        return self._add_command(name, **options)

    def with_config(self, args: Sequence[str] | None) -> Sequence[str] | None:
        """``args`` with the options of its ``--config`` file in front, if it has one."""
        if args is None or "--config" not in self._known_options:
            return args
        path = _config_path(args)
        if path is None:
            return args
        try:
            with open(path, "rb") as file:
                table = tomllib.load(file)
        except OSError as exc:
            self.error(f"--config: cannot read {path}: {exc.strerror or exc}")
        except tomllib.TOMLDecodeError as exc:
            self.error(f"--config: {path} is not valid TOML: {exc}")
        options: list[str] = []
        for key, value in table.items():
            options += self._config_option(path, key, value)
        return [*options, *args]

    def _config_option(self, path: str, key: str, value: object) -> list[str]:
        option = "--" + key.replace("_", "-")
        known = self._known_options.get(option)
        if known is None or option in ("--config", "--help"):
            self.error(f"--config: {path}: {key!r} is not an option of {self.prog}")
        if isinstance(value, bool):
            if known.takes_value:
                self.error(f"--config: {path}: {key} takes a value, not {str(value).lower()}")
            return [option] if value else []
        if not known.takes_value:
            self.error(f"--config: {path}: {key} is true or false")
        if isinstance(value, list):
            if not known.repeats:
                self.error(f"--config: {path}: {key} takes one value, not a list")
            return [part for item in value for part in (option, str(item))]
        if not isinstance(value, str | int | float):
            self.error(f"--config: {path}: {key} must be a string or a number")
        return [option, str(value)]

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        return super().parse_known_args(self.with_config(args), namespace)


class CommandParser(Parser):
    """The parser of one command (``chat serve``, ``echo send``...): options and
    positional arguments intermixed, and what it does not know is its own error."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls us back: the real work
            return argparse.ArgumentParser.parse_known_args(self, args, namespace)
        self._intermixing = True
        try:
            parsed, extras = self.parse_known_intermixed_args(self.with_config(args), namespace)
        finally:
            self._intermixing = False
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras
