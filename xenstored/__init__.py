"""A xenstored-compatible daemon on the versioned store.

It serves the xenstore wire protocol on a unix socket and keeps the state in a git branch:

- :mod:`~xenstored.protocol`: packets and payloads; :mod:`~xenstored.paths`: path rules;
- :mod:`~xenstored.nodes`: the node tree, through one module: :mod:`~xenstored.tree` (the nodes, and
  reading them), :mod:`~xenstored.mutations` (changing them), :mod:`~xenstored.merge` (the three-way merge),
  :mod:`~xenstored.gittrees` (the encoding in git trees: each node a directory with ``.value`` and
  ``.perms``, children as subdirectories); :mod:`~xenstored.perms`: permissions;
- :mod:`~xenstored.transactions`: transactions as forks of the state merged back node by node;
- :mod:`~xenstored.state`: the latest state, changed in one order;
  :mod:`~xenstored.journal`: group commits to git, and changes from other writers;
  :mod:`~xenstored.watches`: watches;
- :mod:`~xenstored.requests` and :mod:`~xenstored.admin`: the request handlers;
- :mod:`~xenstored.connection` and :mod:`~xenstored.server`: sockets;
  :mod:`~xenstored.cli`: the command.
"""

from xenstored.errors import ProtocolError, RequestError, XenstoredError
from xenstored.server import ServerConfig, XenstoreServer

__all__ = ["ProtocolError", "RequestError", "ServerConfig", "XenstoreServer", "XenstoredError"]
