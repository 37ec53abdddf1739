"""The simulated hypervisor (``sim://``, ``sim:///abs/dir``): libvirt's rules, state, faults and drift."""

from drivers.sim.driver import SimDriver
from drivers.sim.faults import FaultPlan
from drivers.sim.host import SimHost

__all__ = ["FaultPlan", "SimDriver", "SimHost"]
