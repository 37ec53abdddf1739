"""A xenstored-compatible daemon on the versioned store.

It serves the xenstore wire protocol on a unix socket and keeps the state in a git branch:

- :mod:`~toolstack.xenstored.protocol`: packets and payloads; :mod:`~toolstack.xenstored.paths`: path rules;
- :mod:`~toolstack.xenstored.nodes`: the node encoding in git trees (each node a directory with ``.value``
  and ``.perms``, children as subdirectories); :mod:`~toolstack.xenstored.perms`: permissions;
- :mod:`~toolstack.xenstored.transactions`: transactions as forks of the state merged back node by node;
- :mod:`~toolstack.xenstored.state`: the latest state, changed in one order;
  :mod:`~toolstack.xenstored.journal`: group commits to git, and changes from other writers;
  :mod:`~toolstack.xenstored.watches`: watches;
- :mod:`~toolstack.xenstored.requests` and :mod:`~toolstack.xenstored.admin`: the request handlers;
- :mod:`~toolstack.xenstored.connection` and :mod:`~toolstack.xenstored.server`: sockets;
  :mod:`~toolstack.xenstored.cli`: the command.
"""

from toolstack.xenstored.errors import ProtocolError, RequestError, XenstoredError
from toolstack.xenstored.server import ServerConfig, XenstoreServer

__all__ = ["ProtocolError", "RequestError", "ServerConfig", "XenstoreServer", "XenstoredError"]
