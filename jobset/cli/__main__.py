"""``python -m jobset.cli``: the ``jobset`` command."""

from .commands import main

main()
