"""bench/bystander.py: the boot storm's bystander client times sequential READs, and its summary's figures."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bystander import NODE, Bystander, latencies, percentile
from xenstore_bench import Ours

from xenstored.client import AsyncClient


def test_percentiles_are_nearest_rank() -> None:
    seconds = [float(n) for n in range(100, 0, -1)]
    assert (percentile(seconds, 0.5), percentile(seconds, 0.99), percentile(seconds, 1.0)) == (50, 99, 100)
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_the_summary_gives_ratios_to_a_reference() -> None:
    ours = latencies([0.002, 0.004, 0.006])
    reference = latencies([0.001, 0.002, 0.003])
    assert (ours.median, ours.count) == (0.004, 3)
    assert math.isclose(ours.mean, 0.004)
    assert reference.cell() == "2.00 / 2.00 / 3.0 (3 READs)"
    assert ours.cell(reference) == "4.00 / 4.00 / 6.0 (x2.0 / x2.0 / x2.0)"
    assert math.isnan(latencies([]).mean)


def test_the_bystander_reads_its_node_until_stopped(tmp_path: Path) -> None:
    daemon = Ours(str(tmp_path), durable=False)
    try:
        bystander = Bystander(daemon.socket)
        time.sleep(0.3)
        seconds = bystander.stop()
        assert bystander.process.returncode == 0
        assert len(seconds) >= 10, "one READ at a time, a millisecond apart, for 0.3 s"
        assert all(0 < s < 0.3 for s in seconds)

        async def read() -> bytes:
            client = await AsyncClient.connect(daemon.socket)
            try:
                return await client.read(NODE)
            finally:
                await client.close()

        assert asyncio.run(read()) == b"/dev/pts/7", "the node it reads is one it wrote first"
    finally:
        daemon.stop()
