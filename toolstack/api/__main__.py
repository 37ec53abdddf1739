"""``python -m toolstack.api``: the same as ``toolstack serve``."""

from toolstack.cli.serve import serve

serve(prog_name="toolstack-serve")
