"""The one error base of the project.

``UserError`` is an error whose message is for the user: what is wrong and with which file or
key, in one line. The ``mgm`` command prints it as ``mgm <command>: error: <message>`` and exits
with code 2, without a traceback. Every package's own error type derives from it (ConfigError,
AnnotationError, VideoError, CheckpointError, RunError), so a library user can catch them all at
once, and the CLI needs no list of them.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, key, value); the message says what and where."""


def parse_problem(e: Exception) -> str:
    """A JSON or YAML parse error in one line: what is wrong and where (line, column)."""
    mark = getattr(e, "problem_mark", None)     # yaml.MarkedYAMLError; its str() spans several lines
    if mark is not None and getattr(e, "problem", None):
        return f"{e.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(e).split())
