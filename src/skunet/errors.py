"""One error type for everything a user can fix, and the one-line way stages report it."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class SkunetError(Exception):
    """A problem with the user's input (a file, an archive, a params key) and what to do about it.

    The message is one line: it names the file or key and says what to do.
    """


def exit_on_error(main: F) -> F:
    """Run `main`; turn a SkunetError into one line on stderr and exit status 2, and Ctrl-C
    (SIGINT) into one line and status 130, the shell's code for it. Outputs are written to a
    temporary name and moved into place, so an interrupted stage leaves none half-written."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            return main(*args, **kwargs)
        except SkunetError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted: run the same command again to go on (a training resumes after "
                  "its last completed epoch)", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
