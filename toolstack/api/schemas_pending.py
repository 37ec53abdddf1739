"""Bodies for pending changes (issue 19): a VM's changes waiting for its next boot, and the reboot that
applies them. Apart from :mod:`toolstack.api.schemas`, which imports :class:`PendingOut` for ``VMOut``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class PendingOut(BaseModel):
    """One field the running domain gets only at its next boot."""

    field: str = Field(description="The field, as a dotted path: memory, boot.device, disks.cdrom0.source.")
    live: Any = Field(description="What the running domain has (null: nothing).")
    next_boot: Any = Field(description="What its next boot gets (null: nothing).")
    unit: str = Field("", description="MiB for memory fields, else empty.")


class RebootRequest(BaseModel):
    """A reboot: the guest's own (keeps the running configuration), or with ``apply`` a restart of the domain
    from its persistent definition, which applies the pending changes. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    apply: StrictBool = Field(
        False, description="Power the domain off and start it again, so that its pending changes take effect."
    )
    timeout: float = Field(60.0, ge=0, le=3600, description="With apply: seconds to wait for the power-off.")
    force: StrictBool = Field(False, description="With apply: destroy it if the guest has not powered off.")
