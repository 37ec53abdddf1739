"""The directory host's parsed domains: each domain file is parsed once while its bytes stay the same, and
read again every time, so that what another process changed is seen at once. A file parses to the very
domain that validating it whole gives, and fails as that fails.

- Exact: a file another process rewrote is parsed again; a file it removed is gone.
- One entry per domain: however many domains the host holds, reading them all again parses none of them
  again (a cache that emptied itself when full would parse every one again on a large host).
"""

from __future__ import annotations

import json
import tempfile
import uuid as uuidlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import drivers
from drivers import DomainSpec, DomainState
from drivers.sim.store import SimDomain, parse_domain
from tests.drivers.strategies import domain_specs


def spec(name: str, memory: int = 128) -> DomainSpec:
    return DomainSpec(uuid=uuidlib.uuid4(), name=name, memory=memory)


def test_a_domain_read_twice_unchanged_is_the_same_parsed_domain(tmp_path: Path):
    with drivers.open(f"sim://{tmp_path}?durable=0") as writer, drivers.open(f"sim://{tmp_path}") as reader:
        writer.define(spec("a"))
        first = reader.host.all()
        assert [d.name for d in first] == ["a"]
        assert reader.host.all()[0] is first[0]


def test_a_domain_file_changed_by_another_process_is_parsed_again(tmp_path: Path):
    with drivers.open(f"sim://{tmp_path}?durable=0") as writer, drivers.open(f"sim://{tmp_path}") as reader:
        vm = spec("a", memory=128)
        writer.define(vm)
        assert reader.get_spec(vm.uuid).memory == 128
        writer.define(vm.evolve(memory=256))
        writer.start(vm.uuid)
        assert reader.get_spec(vm.uuid).memory == 256
        assert reader.info(vm.uuid).state is DomainState.RUNNING


def test_a_domain_file_rewritten_by_hand_is_read_as_it_now_is(tmp_path: Path):
    with drivers.open(f"sim://{tmp_path}?durable=0") as hv:
        vm = spec("a", memory=128)
        hv.define(vm)
        assert hv.get_spec(vm.uuid).memory == 128
        file = tmp_path / "domains" / f"{vm.uuid}.json"
        domain = SimDomain.model_validate_json(file.read_bytes())
        file.write_text(domain.model_copy(update={"config": vm.evolve(memory=512)}).model_dump_json())
        assert hv.get_spec(vm.uuid).memory == 512


def test_a_domain_removed_by_another_process_is_gone(tmp_path: Path):
    with drivers.open(f"sim://{tmp_path}?durable=0") as writer, drivers.open(f"sim://{tmp_path}") as reader:
        kept, dropped = spec("kept"), spec("dropped")
        writer.define(kept)
        writer.define(dropped)
        assert sorted(d.name for d in reader.list()) == ["dropped", "kept"]
        writer.undefine(dropped.uuid)
        assert [d.name for d in reader.list()] == ["kept"]
        assert dropped.uuid not in reader.host.store._parsed


def test_every_domain_of_a_large_host_stays_parsed(tmp_path: Path):
    count = 5000  # more than the 4,096 parsed domains an earlier cache kept before it emptied itself
    with drivers.open(f"sim://{tmp_path}?durable=0") as writer, writer.host.store.transaction() as tx:
        for index in range(count):
            tx.put(SimDomain(uuid=uuidlib.uuid4(), config=spec(f"d{index}")))
    with drivers.open(f"sim://{tmp_path}") as reader:
        first = {d.uuid: d for d in reader.host.all()}
        again = {d.uuid: d for d in reader.host.all()}
        assert len(first) == count
        assert all(again[uuid] is domain for uuid, domain in first.items())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=domain_specs(), running=st.booleans(), ballooned=st.booleans())
def test_a_domain_file_parses_as_validating_it_whole_does(
    tmp_path: Path, spec: DomainSpec, running: bool, ballooned: bool
):
    # A running domain's live spec, when equal to its persistent one, is validated once and shared.
    with drivers.open(f"sim://{tempfile.mkdtemp(dir=tmp_path)}?durable=0") as hv:
        hv.define(spec)
        if running:
            hv.start(spec.uuid)
            if ballooned:
                hv.oob_set_memory(spec.uuid, spec.effective_max_memory)
        data = (hv.host.store.path / "domains" / f"{spec.uuid}.json").read_bytes()
        whole = SimDomain.model_validate_json(data)
        assert parse_domain(data) == whole
        assert parse_domain(data).model_dump_json() == whole.model_dump_json()


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: {**doc, "state": "bogus"},
        lambda doc: {
            **doc,
            "config": {**doc["config"], "memory": -1},
            "live": {**doc["config"], "memory": -1},
        },
        lambda doc: [doc],
    ],
    ids=["bad-state", "bad-shared-spec", "not-an-object"],
)
def test_a_damaged_domain_file_fails_as_validating_it_whole_fails(tmp_path: Path, edit):
    with drivers.open(f"sim://{tmp_path}?durable=0") as hv:
        vm = spec("a")
        hv.define(vm)
        hv.start(vm.uuid)
        doc = json.loads((tmp_path / "domains" / f"{vm.uuid}.json").read_bytes())
    data = json.dumps(edit(doc)).encode()
    with pytest.raises(ValidationError) as whole:
        SimDomain.model_validate_json(data)
    with pytest.raises(ValidationError) as ours:
        parse_domain(data)
    assert str(ours.value) == str(whole.value)
