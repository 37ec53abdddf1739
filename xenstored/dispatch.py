"""Routing a request to its handler, and turning every failure into a reply."""

from __future__ import annotations

import logging
from collections.abc import Callable

from xenstored.admin import AdminRequests
from xenstored.errors import InternalError, RequestError, Unsupported
from xenstored.protocol import Op, Packet
from xenstored.requests import NodeRequests
from xenstored.session import Outcome, Session

log = logging.getLogger(__name__)
Handler = Callable[[Session, Packet], Outcome]


class Dispatcher:
    """Maps message types to handlers. Unknown types get ENOSYS; a bug in a handler gets EIO and a log
    entry, never a dead daemon."""

    def __init__(self, nodes: NodeRequests, admin: AdminRequests) -> None:
        self.handlers: dict[int, Handler] = {
            Op.READ: nodes.read,
            Op.WRITE: nodes.write,
            Op.MKDIR: nodes.mkdir,
            Op.RM: nodes.rm,
            Op.DIRECTORY: nodes.directory,
            Op.DIRECTORY_PART: nodes.directory_part,
            Op.GET_PERMS: nodes.get_perms,
            Op.SET_PERMS: nodes.set_perms,
            Op.WATCH: nodes.watch,
            Op.UNWATCH: nodes.unwatch,
            Op.RESET_WATCHES: nodes.reset_watches,
            Op.TRANSACTION_START: nodes.transaction_start,
            Op.TRANSACTION_END: nodes.transaction_end,
            Op.GET_DOMAIN_PATH: admin.get_domain_path,
            Op.INTRODUCE: admin.introduce,
            Op.RELEASE: admin.release,
            Op.IS_DOMAIN_INTRODUCED: admin.is_domain_introduced,
            Op.RESUME: admin.resume,
            Op.SET_TARGET: admin.set_target,
            Op.CONTROL: admin.control,
        }
        self.errors = 0
        self.crashes = 0

    def handle(self, session: Session, packet: Packet) -> Outcome | RequestError:
        """The outcome of a request, or the error to reply with."""
        handler = self.handlers.get(packet.op)
        try:
            if handler is None:
                raise Unsupported(f"message type {packet.op} is not supported")
            return handler(session, packet)
        except RequestError as err:
            self.errors += 1
            if err.errno == "EAGAIN":
                # One line per transaction sent back to retry (a boot storm counts them; the counts by errno
                # are the connection's metrics, xenstored_requests_total).
                log.info("EAGAIN: %s from dom%d", packet.op_name, session.caller.domid)
            return err
        except Exception as err:
            self.crashes += 1
            log.exception("%s from dom%d failed unexpectedly", packet.op_name, session.caller.domid)
            return InternalError(f"internal error: {err!r}")
