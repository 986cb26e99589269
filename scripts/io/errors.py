"""Errors a user can cause and fix, and the checks of command-line switches.

Every error the bundle raises for something the user can fix (a bad input file, a bad option, an
output folder that cannot be written) is an :class:`HSRSError`; its message names the file or the
option, says what is wrong and what to do. The bundle's command lines print only that message
(:mod:`scripts.engine.user_errors`); any other exception is a bug or an accident and keeps its
traceback. The subclasses also derive from the built-in type callers already catch
(``ValueError`` for inputs and options, ``OSError`` for outputs).
"""

from __future__ import annotations

from typing import Any


class HSRSError(Exception):
    """Base of the errors a user can fix; the message says what was wrong and what to do."""


class HSRSInputError(HSRSError, ValueError):
    """An HSRS stack, label map or datalist that cannot be used; the message names the file and the problem."""


class InputNotFoundError(HSRSInputError, FileNotFoundError):
    """An input file or folder that does not exist."""


class HSRSOptionError(HSRSError, ValueError):
    """A workflow option (config id / command-line switch) with a value that cannot work."""


class HSRSOutputError(HSRSError, OSError):
    """An output that cannot be written (disk full, folder removed, no permission); names the file."""


class OutputNotAFolderError(HSRSOutputError, NotADirectoryError):
    """The output path exists and is a file."""


class OutputNotWritableError(HSRSOutputError, PermissionError):
    """The output folder cannot be created or written."""


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (``__cause__``, ``__context__``), outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def find_user_error(exc: BaseException | None) -> HSRSError | None:
    """The outermost :class:`HSRSError` in the chain of ``exc`` (MONAI and ignite wrap errors), or None."""
    return next((e for e in exception_chain(exc) if isinstance(e, HSRSError)), None)


def short_reason(exc: BaseException) -> str:
    """One line for a table or a log: the user error's message, else the innermost exception as ``Type: message``."""
    user = find_user_error(exc)
    if user is not None:
        return user_message(user)
    inner = exception_chain(exc)[-1]
    return f"{type(inner).__name__}: {inner}".splitlines()[0]


def user_message(exc: BaseException) -> str:
    """The message of a user error, without the worker traceback a DataLoader worker adds when it re-raises it."""
    text = str(exc)
    if "Original Traceback (most recent call last):" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def as_bool(value: Any, name: str) -> bool:
    """A switch given in Python, YAML or on the command line (``--skip_errors true`` arrives as the string "true").

    Examples:
        >>> as_bool("true", "skip_errors"), as_bool(False, "skip_errors")
        (True, False)
    """
    if isinstance(value, bool | int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise HSRSOptionError(f"{name} must be true or false, got {value!r}.")
