"""``python -m toolstack.cli``: the ``toolstack`` command."""

from toolstack.cli import main

main()
