"""A cap on file size, standing in for a full disk: a write past it fails with ``EFBIG`` (an ``OSError``)."""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager


def files_at_most(limit: int) -> None:
    """No file of this process may grow past ``limit`` bytes from now on; for a child's ``preexec_fn``."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Within the block, no file of this process may grow past ``limit`` bytes; both settings restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.getsignal(signal.SIGXFSZ)
    files_at_most(limit)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
