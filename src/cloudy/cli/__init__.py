"""The ``cloudy`` command line: one module a command or a part of one.

`commands` reads the arguments (`args`, `values`, `help`) and runs a command:
``slave`` (`slave`, with `heart`), ``master`` and ``local`` (`local`: the slaves as
child OS processes, with `faults` injected; `display` shows the run, `plot` draws
it, `interrupt` is Ctrl-C), ``sim`` (`sim`, `sim_args`), ``top`` and ``ps``
(`top`, `top_args`), ``verify`` (`verify`, with `progress`); `errors` is how a
failure is said.
"""

from .commands import main

__all__ = ["main"]
