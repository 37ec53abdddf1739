"""``python -m xenstored --socket PATH [--repo PATH] [--branch main]``."""

from xenstored.cli import xenstored

if __name__ == "__main__":
    xenstored(prog_name="python -m xenstored")
