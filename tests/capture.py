"""Call a command's `main(argv)` in-process and capture what it prints."""

from __future__ import annotations

import contextlib
import io


def run_main(main, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `main([str(a) for a in argv])`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()
