"""One clear line for a user error on the bundle's command line; unexpected errors keep their traceback.

The workflow configs import this module in their ``imports:`` section. When the process is the
bundle's command line (``python -m monai.bundle ...``, also under ``torchrun``), importing it

- installs a ``sys.excepthook`` that, when the exception reaching the top -- or one it was raised
  from (MONAI wraps errors in "Failed to evaluate ConfigExpression", ignite re-raises them) -- is a
  :class:`~scripts.io.errors.HSRSError`, prints only that error's message, prefixed ``error: ``, as
  the last line and exits with status 2; any other exception gets Python's usual traceback;
- adds a filter to the root logger's handlers that drops ignite's "... run is terminating due to
  exception: <message>" lines for such an error, so the message is not repeated above the last line.

Imported anywhere else (tests, MONAI Label, a notebook) it changes nothing; :func:`install` does
the same on request.

:class:`UserErrorHandler`, the first handler of each engine in the configs, keeps the traceback of a
user error out of the log (MONAI's ``StatsHandler`` logs one per engine): ignite gives an exception
to the first ``EXCEPTION_RAISED`` handler that raises it, so this one re-raises a user error as it
is and logs, then re-raises, any other exception as ``StatsHandler`` would.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType

from scripts.io.errors import find_user_error, user_message

#: Exit status of a run ended by a user error (the usual status of a command-line usage error).
EXIT_STATUS = 2


def print_user_error(exc: BaseException, stream=None) -> bool:
    """Print ``error: <message>`` for a user error in the chain of ``exc``; False (nothing printed) otherwise."""
    user = find_user_error(exc)
    if user is None:
        return False
    stream = stream if stream is not None else sys.stderr
    sys.stdout.flush()
    lines = user_message(user).splitlines() or [type(user).__name__]
    stream.write("\n".join(f"error: {line}" if i == 0 else line for i, line in enumerate(lines)) + "\n")
    stream.flush()
    return True


class _UserErrorExcepthook:
    def __init__(self, previous):
        self.previous = previous

    def __call__(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, Exception) and print_user_error(exc):
            logging.shutdown()
            sys.exit(EXIT_STATUS)  # inside the hook: ends the interpreter with this status
        self.previous(exc_type, exc, tb)


class UserErrorHandler:
    """Ignite handler, first in an engine's handler list: a user error leaves the engine without a logged traceback.

    On ``EXCEPTION_RAISED`` it re-raises a :class:`~scripts.io.errors.HSRSError` (or an exception
    raised from one) as it is, so the command line prints its message once; any other exception is
    logged with its traceback on the engine's logger and re-raised, which is what MONAI's
    ``StatsHandler`` does (ignite stops at the first exception handler that raises).
    """

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine, e: BaseException) -> None:
        if find_user_error(e) is None:
            engine.logger.exception(f"Exception: {e}")
        raise e


class EngineUserErrorFilter(logging.Filter):
    """Drop ignite's "... run is terminating due to exception: ..." lines while a user error is handled.

    Also drops a record that carries a user error as its exception (``logger.exception``).
    """

    MARKER = "terminating due to exception"

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            return find_user_error(exc) is None
        if self.MARKER in str(record.msg):
            return find_user_error(sys.exc_info()[1]) is None
        return True


def running_as_bundle_command() -> bool:
    """True in a process started as ``python -m monai.bundle ...`` (directly or by torchrun)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", "") in ("monai.bundle.__main__", "monai.bundle")


def install() -> None:
    """Install the excepthook and the log filter (idempotent)."""
    if not isinstance(sys.excepthook, _UserErrorExcepthook):
        sys.excepthook = _UserErrorExcepthook(sys.excepthook)
    handlers = list(logging.getLogger().handlers) or [logging.lastResort]
    for handler in handlers:
        if handler is not None and not any(isinstance(f, EngineUserErrorFilter) for f in handler.filters):
            handler.addFilter(EngineUserErrorFilter())


if running_as_bundle_command():
    install()
