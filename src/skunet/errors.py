"""One error type for everything a user can fix, and the one-line way stages report it."""

from __future__ import annotations

import errno
import functools
import logging
import signal
import sys
import threading
from typing import Callable, TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

F = TypeVar("F", bound=Callable[..., object])

GO_ON = "run the same command again to go on (a training resumes after its last completed epoch)"
# What to do about an OSError, by its errno. A short write can reach us without one (numpy's
# `tofile` reports "N requested and M written"), hence the advice for an unknown reason.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_IN_THE_WAY = (errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class SkunetError(Exception):
    """A problem with the user's input (a file, an archive, a params key) and what to do about it.

    The message is one line: it names the file or key and says what to do.
    """


class OutOfTime(Exception):
    """A training stopped for its deadline (a time-boxed machine): at an epoch boundary, because
    the next epoch would not end in time, or within an epoch that ran past it, that epoch dropped.
    The last completed epoch's resume state is saved; the same command goes on from there."""


# The exit status of a stage that ran out of time (EX_TEMPFAIL: try again later), so a script
# driving a time-boxed machine can tell it from a failure.
OUT_OF_TIME_STATUS = 75


class Terminated(BaseException):
    """SIGTERM arrived (a job scheduler, `kill`, DVC's queue stopping a worker); like
    KeyboardInterrupt, not an Exception, so no `except Exception` swallows it."""


def reason(err: BaseException) -> str:
    """An error's own message cut to its first sentence, to quote inside a one-line message
    (PyTorch's runs on to several lines of advice)."""
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return text.split(". ")[0].rstrip(".")


def os_error_line(err: OSError) -> str:
    """One line for an OSError: the file, the OS reason, and what to do."""
    where = err.filename if err.filename is not None else "an output"
    why = err.strerror or (str(err.args[0]) if err.args else "") or type(err).__name__
    if err.errno in _FULL:
        advice = "free disk space and run the same command again"
    elif err.errno == errno.EFBIG:
        advice = "free disk space or raise the file size limit (`ulimit -f`) and run the same command again"
    elif err.errno in _IN_THE_WAY:
        advice = "a file is where a folder must be (or the reverse): move it away and run the same command again"
    elif err.errno in _NOT_WRITABLE:
        advice = "make that location writable and run the same command again"
    else:
        advice = "check that the disk has free space and the location is writable, then run the same command again"
    return f"{where}: {why}; {advice}"


def _say(line: str) -> None:
    """`line` on stderr, on a line of its own: a progress bar the error left open (a signal that
    came while the bar was being set up, before its `with` could close it) is closed first."""
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar cut off half-made: start the line afresh instead
            print(file=sys.stderr)
    print(line, file=sys.stderr)


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM stops at once, unannounced
    raise Terminated


def exit_on_error(main: F) -> F:
    """Run `main`; turn a SkunetError into one line on stderr and exit status 2, an OSError (disk
    full, an unwritable location) into one line naming the file and status 2, a training that
    stopped at its deadline (OutOfTime) into one line and status 75, and Ctrl-C (SIGINT) or
    SIGTERM into one line and status 130 or 143, the shell's codes for them (128 + signal).
    Outputs are written to a temporary name and moved into place, so a stage stopped any of these
    ways leaves none half-written."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            # log lines written while a progress bar is drawn clear it and get lines of their own
            with logging_redirect_tqdm():
                return main(*args, **kwargs)
        except SkunetError as err:
            for line in str(err).splitlines() or [""]:  # several problems: one line each
                _say(f"error: {line}")
            raise SystemExit(2) from None
        except OSError as err:
            _say(f"error: {os_error_line(err)}")
            raise SystemExit(2) from None
        except OutOfTime as err:
            _say(f"out of time: {err}; {GO_ON}")
            raise SystemExit(OUT_OF_TIME_STATUS) from None
        except KeyboardInterrupt:
            _say(f"interrupted: {GO_ON}")
            raise SystemExit(128 + signal.SIGINT) from None
        except Terminated:
            _say(f"terminated (SIGTERM): {GO_ON}")
            raise SystemExit(128 + signal.SIGTERM) from None

    return wrapper  # type: ignore[return-value]
