"""Operations per second of define + start + destroy, per driver, beside the raw libvirt call rate.

Run: ``.venv/bin/python bench/driver_bench.py [--seconds S]``. Every figure is measured in this run; the
libvirt overhead is reported as a ratio (raw libvirt rate / driver rate; the target is at most 1.5x).
This is a benchmark, not a timed test: it never fails on speed. Cold figures beside the warm ones: one
define + start + destroy in a fresh process (importing and opening the driver first, as a command does),
with its peak RSS (bench/fresh.py); and this process's own peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fresh import PYTHON, cold_warm, fresh, peak_rss_mb, timed_runs  # bench/fresh.py

import drivers
from drivers import DomainSpec, Driver
from drivers.libvirt.xml import spec_to_xml

# One cycle in a fresh process: what a command pays to import and open the driver, then call it.
ONE_CYCLE = """
import sys, uuid
import drivers
from drivers import DomainSpec
with drivers.open(sys.argv[1]) as hv:
    spec = DomainSpec(uuid=uuid.uuid4(), name="cold-" + uuid.uuid4().hex[:8], memory=256)
    hv.define(spec)
    hv.start(spec.uuid)
    hv.destroy(spec.uuid)
"""


def cold_line(label: str, uri: str, per_second: float) -> str:
    """One define + start + destroy in a fresh process, beside a warm cycle."""
    return cold_warm(label, fresh([PYTHON, "-c", ONE_CYCLE, uri], timeout=60), 1 / per_second, "a cycle")


def spec(index: int, tag: str) -> DomainSpec:
    return DomainSpec(
        uuid=uuidlib.uuid4(),
        name=f"bench-{tag}-{index}",
        memory=256,
        disks=[{"id": "root", "source": "/var/lib/bench/root.img", "target": "vda"}],
        nics=[
            {
                "id": "eth0",
                "mac": f"52:54:00:00:{index // 256 % 256:02x}:{index % 256:02x}",
                "network": "default",
            }
        ],
    )


def rate(cycle: Callable[[int], None], seconds: float) -> tuple[float, int]:
    """Run ``cycle(i)`` for about ``seconds``, after up to 20 warm-up cycles within the same budget; returns
    (cycles per second, cycles)."""
    timed_runs(lambda warmup: cycle(-1 - warmup), 20, time.monotonic() + seconds)
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        cycle(count)
        count += 1
    return count / elapsed, count


def driver_cycle(hv: Driver, tag: str) -> Callable[[int], None]:
    base = spec(0, tag)

    def cycle(index: int) -> None:
        # A fresh identity per cycle, without re-validating: callers hold validated specs already.
        domain = base.model_copy(update={"uuid": uuidlib.uuid4(), "name": f"bench-{tag}-{index}"})
        hv.define(domain)
        hv.start(domain.uuid)
        hv.destroy(domain.uuid)

    return cycle


def raw_libvirt_cycle(conn: object, tag: str) -> Callable[[int], None]:
    """The same work through libvirt-python directly, sending the XML our driver would send."""
    base = spec(0, tag)
    template = spec_to_xml(base, "test")

    def cycle(index: int) -> None:
        xml = template.replace(str(base.uuid), str(uuidlib.uuid4())).replace(
            base.name, f"bench-{tag}-{index}"
        )
        dom = conn.defineXML(xml)  # type: ignore[attr-defined]
        dom.create()
        dom.destroy()

    return cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per case")
    args = parser.parse_args()
    rows: list[tuple[str, float, int]] = []
    with drivers.open("sim://") as hv:
        rows.append(("sim:// (memory)", *rate(driver_cycle(hv, "mem"), args.seconds)))
    with tempfile.TemporaryDirectory(prefix="driver-bench-") as state, drivers.open(f"sim://{state}") as hv:
        rows.append((f"sim:///dir (fsync, {state})", *rate(driver_cycle(hv, "dir"), args.seconds)))

    try:
        import libvirt
    except ImportError:
        print("libvirt-python is not installed: no libvirt figures")
        libvirt = None
    raw = driver = None
    if libvirt is not None:
        with drivers.open("test:///default") as hv:
            conn = hv.connection.raw  # the same process-wide test hypervisor
            raw, raw_count = rate(raw_libvirt_cycle(conn, "raw"), args.seconds)
            driver, driver_count = rate(driver_cycle(hv, "drv"), args.seconds)
            raw_again, _ = rate(raw_libvirt_cycle(conn, "raw2"), args.seconds)
            raw = (raw + raw_again) / 2  # measured before and after, against drift as the host fills up
        rows.append(("test:///default through LibvirtDriver", driver, driver_count))
        rows.append(("test:///default raw libvirt-python calls", raw, raw_count))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'case':<{width}}  {'define+start+destroy/s':>22}  {'cycles':>7}")
    for name, per_second, count in rows:
        print(f"{name:<{width}}  {per_second:>22,.0f}  {count:>7}")
    print()
    with tempfile.TemporaryDirectory(prefix="driver-cold-") as state:
        print(cold_line("sim:///dir, one cycle", f"sim://{state}", rows[1][1]))
    if driver:
        print(cold_line("test:///default, one cycle", "test:///default", driver))
    print(f"peak RSS of this benchmark process (the warm figures): {peak_rss_mb():.0f} MB\n")
    if raw and driver:
        ratio = raw / driver
        verdict = "within" if ratio <= 1.5 else "ABOVE"
        print(f"\nLibvirtDriver overhead: {ratio:.2f}x the raw libvirt call rate ({verdict} the 1.5x target)")
        print(f"sim:// memory vs raw libvirt test driver: {rows[0][1] / raw:.2f}x")


if __name__ == "__main__":
    main()
