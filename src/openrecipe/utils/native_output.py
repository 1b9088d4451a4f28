"""Native libraries (llama.cpp, ggml, oneDNN) write to file descriptors 1 and 2 directly, past Python's
logging; this sends that chatter to a log file while a block runs, so the terminal keeps one summary line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def native_output_to(log_path: Path) -> Iterator[Path]:
    """Redirect fds 1 and 2 (C-level stdout/stderr) into `log_path` (appended) for the duration."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield log_path
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
