"""Progress bars that do not look like errors: on stdout in a Jupyter kernel, which draws stderr as a red
box, and on stderr in a terminal, so piped stdout stays clean."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def bar(**arguments):
    """A `tqdm` bar (same arguments) on stdout in a notebook, on stderr elsewhere."""
    from tqdm import tqdm

    arguments.setdefault("file", sys.stdout if in_notebook() else sys.stderr)
    arguments.setdefault("dynamic_ncols", not in_notebook())
    return tqdm(**arguments)
