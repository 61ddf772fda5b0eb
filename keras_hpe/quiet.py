"""`filtered_stderr`: hide the start-up and progress chatter that libraries write to file descriptor 2.

TensorFlow's C++ libraries (while they load) and Beam's local workers (child
processes, which inherit the descriptor) write there directly, past Python's
`sys.stderr`, so only the descriptor itself can be filtered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def filtered_stderr(drop: re.Pattern) -> Iterator[None]:
    """Capture file descriptor 2 during the block; then write back the lines `drop` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not drop.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
