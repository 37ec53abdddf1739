"""``python -m toolstack.xenstored --socket PATH [--repo PATH] [--branch main]``."""

from toolstack.xenstored.cli import xenstored

if __name__ == "__main__":
    xenstored(prog_name="python -m toolstack.xenstored")
