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
