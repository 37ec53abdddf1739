"""`python -m toolstack` runs the CLI."""

from toolstack.cli import main

main()
