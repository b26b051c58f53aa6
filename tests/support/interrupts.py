"""Ctrl-C in tests, delivered the way an operator's terminal delivers it.

A shell that starts pytest in the background (``.ci/test &`` from a script) makes it and its
children ignore SIGINT, and Python keeps an inherited SIG_IGN: ``_thread.interrupt_main()`` then
does nothing and a child sent SIGINT never sees it. ``interrupt_main()`` also only sets a flag: a
main thread blocked in ``Thread.join()`` does not wake up for it, whereas a real signal aimed at
that thread interrupts the wait, as the terminal's Ctrl-C does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def sigint_default() -> None:
    """``preexec_fn`` for a child that must take Ctrl-C: undo an inherited SIG_IGN."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def ctrl_c_to_main_thread() -> Iterator[Callable[[], None]]:
    """Yield ``press()``, which any thread may call: a real SIGINT to the main thread, raised there as
    KeyboardInterrupt even if the test process inherited SIGINT ignored."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main is not None

    def press() -> None:
        signal.pthread_kill(main, signal.SIGINT)

    try:
        yield press
    finally:
        signal.signal(signal.SIGINT, old)
