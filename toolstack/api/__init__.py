"""``toolstack serve``: the toolstack over HTTP (FastAPI), an event stream, and a web page.

>>> from toolstack.api import create_app
>>> app = create_app(Toolstack.open("state.git", "sim://"), token="...")
"""

from toolstack.api.app import create_app
from toolstack.api.deps import ApiSettings

__all__ = ["ApiSettings", "create_app"]
