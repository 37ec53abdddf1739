"""``python -m toolstack.api``: the same as ``toolstack serve``."""

from toolstack.api.cli import serve

serve(prog_name="toolstack-serve")
