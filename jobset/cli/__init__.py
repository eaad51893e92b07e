"""The ``jobset`` command: status, listing, watching, cancelling and removing stored sets.

``jobset.cli.commands`` holds the commands; the local cluster (``jobset cluster``,
:mod:`jobset.local.command`) and the scale loop (``jobset scale`` and ``jobset slurm``,
:mod:`jobset.scaling.cli`) are their own command groups, added to it.
"""

from .commands import main

__all__ = ["main"]
