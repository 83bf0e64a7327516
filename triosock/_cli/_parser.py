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
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["CommandParser", "Parser", "add_config_option"]


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read options from this TOML file: its keys are the long options without "
        "the dashes (max-connections = 500); the command line overrides it",
    )


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
    """An ``ArgumentParser`` whose errors are one line, and that reads ``--config``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def with_config(self, args: Sequence[str] | None) -> Sequence[str] | None:
        """``args`` with the options of its ``--config`` file in front, if it has one."""
        if args is None or "--config" not in self._option_string_actions:
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
        action = self._option_string_actions.get(option)
        if action is None or option in ("--config", "--help"):
            self.error(f"--config: {path}: {key!r} is not an option of {self.prog}")
        flag = action.nargs == 0
        if isinstance(value, bool):
            if not flag:
                self.error(f"--config: {path}: {key} takes a value, not {str(value).lower()}")
            return [option] if value else []
        if flag:
            self.error(f"--config: {path}: {key} is true or false")
        if isinstance(value, list):
            if not isinstance(action, argparse._AppendAction):
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
