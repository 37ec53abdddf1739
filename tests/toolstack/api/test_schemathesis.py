"""Property-based tests against the generated OpenAPI spec, with every schemathesis check (the CLI's
``-c all``): no 5xx; every response (status code, content type, headers, body) matches the spec; every
schema-valid request is accepted and every schema-violating one refused; a missing or wrong token is refused;
methods a path lacks get 405 with ``Allow``. Requests go through the real app and toolstack on a real
repository (made at import: schemathesis parametrizes from a schema object; ``from_fixture`` does not work
with this pytest).

``API_FUZZ_EXAMPLES`` sets the examples per operation (25 by default).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.hooks import HookContext

from drivers.fields import DISK_SOURCE_RE
from drivers.models import parse_memory
from tests.toolstack.api.conftest import TOKEN
from toolstack.api import ApiSettings, create_app
from toolstack.ops import Toolstack

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))

_workdir = tempfile.TemporaryDirectory(prefix="toolstack-api-schemathesis-")
_ts = Toolstack.init(f"{_workdir.name}/state.git", f"sim://{_workdir.name}/sim", author="schemathesis")
app = create_app(_ts, TOKEN, ApiSettings(default_wait=5))
# A VM that generated requests can find by name ("web1") or act on; the rest they create themselves.
_ts.create("web1", memory=64)

CONFIG = SchemathesisConfig.from_dict(
    {
        # The token, for the spec's own bearer scheme (components.securitySchemes.HTTPBearer): schemathesis
        # then sends it on every request but those where it drops the credentials on purpose, and the
        # ignored_auth check knows the credentials it must try without, or wrong.
        "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
        "checks": {
            # The default statuses, plus 412: a well-formed If-Match that names another version than the
            # VM's current one is refused with 412, as RFC 9110 requires. No schema can say which versions
            # exist (they are commits, made by the requests themselves), so a schema-valid request can
            # rightly get it. 409 (busy, a conflict, a name taken) is in the defaults for the same reason.
            "positive_data_acceptance": {
                "expected-statuses": ["2XX", "3XX", "401", "403", "404", "409", "412", "429", "5XX"]
            },
        },
    }
)

schema = schemathesis.openapi.from_dict(app.openapi(), config=CONFIG)
schema.app = app  # type: ignore[attr-defined]


# A case hook, not a body one: schemathesis applies filter_case to every phase (coverage included).
@schema.hook("filter_case")
def _within_the_rules_a_schema_cannot_state(context: HookContext, case: schemathesis.Case) -> bool:
    """Keep only ``POST /vms`` bodies within the rules between fields that JSON Schema cannot state.

    A ceiling at least its boot value (``max_memory`` >= ``memory``, which may be text like "2G";
    ``max_vcpus`` >= ``vcpus``), and device ids, disk targets and NIC MACs unique among the devices given
    whole (``uniqueItems`` compares whole items, not one property of them). The spec's descriptions say so,
    and the server refuses a body that breaks one with a 422 naming it (tested in test_vms.py). Only these
    rules are filtered here: every other refusal of a schema-valid body is still a failure.
    """
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != ("POST", "/vms"):
        return True
    body = case.body
    if not isinstance(body, dict):
        return True
    return _ceilings_hold(body) and _devices_unique(body) and _volumes_fit(body)


# Images that POST /vms creates (disks given as {path, size, format}) are made here, never at the generated
# path: the fuzzer must not write files all over the host.
VOLUMES = Path(_workdir.name) / "volumes"
VOLUMES.mkdir()
# The file system bounds a file's size (ext4: below 16 TiB), which the schema cannot know: a bigger image is
# refused with a 422 naming it (tested in test_volumes.py).
MAX_VOLUME_MIB = 8 << 20


def _volumes(body: dict) -> list[dict]:
    disks = body.get("disks")
    return [d for d in disks if isinstance(d, dict) and "path" in d] if isinstance(disks, list) else []


def _volumes_fit(body: dict) -> bool:
    try:
        return all(parse_memory(_whole(v["size"])) <= MAX_VOLUME_MIB for v in _volumes(body))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return True  # not a valid size: a schema-violating body, which the server must refuse anyway


@schema.hook("map_case")
def _volumes_in_the_workdir(context: HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """Move each image a ``POST /vms`` body would create under VOLUMES (a valid path stays valid: absolute,
    without the characters a disk path may not have; an invalid one is left as it is, to be refused)."""
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != ("POST", "/vms"):
        return case
    if isinstance(case.body, dict):
        for volume in _volumes(case.body):
            path = volume["path"]
            if isinstance(path, str) and DISK_SOURCE_RE.fullmatch(path):
                volume["path"] = str(VOLUMES / hashlib.sha256(path.encode()).hexdigest()[:16])
    return case


def _whole(value: object) -> object:
    # JSON Schema counts 3.0 as an integer, and so does the server (pydantic's int takes a whole float).
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _ceilings_hold(body: dict) -> bool:
    vcpus, max_vcpus = _whole(body.get("vcpus", 1)), _whole(body.get("max_vcpus"))
    if isinstance(vcpus, int) and isinstance(max_vcpus, int) and max_vcpus < vcpus:
        return False
    try:
        ceiling, memory = _whole(body.get("max_memory")), _whole(body["memory"])
        return ceiling is None or parse_memory(ceiling) >= parse_memory(memory)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return True  # not a valid size: a schema-violating body, which the server must refuse anyway


def _devices_unique(body: dict) -> bool:
    def given(key: str) -> list[dict]:
        items = body.get(key)
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    # Images given by path ({path, size, format}) take free ids and targets, as paths do.
    disks = [disk for disk in given("disks") if "path" not in disk]
    nics = given("nics")
    ids = [device.get("id") for device in (*disks, *nics)]
    targets = [disk.get("target") for disk in disks]
    macs = [str(nic.get("mac")).strip(" \t").lower().replace("-", ":") for nic in nics]
    return all(len(values) == len(set(map(str, values))) for values in (ids, targets, macs))


@pytest.fixture(scope="module", autouse=True)
def _close_toolstack():
    yield
    _ts.close()
    _workdir.cleanup()


def test_every_builtin_check_is_enabled():
    """``call_and_validate()`` without ``checks=`` runs every check the config enables: all of them."""
    load_all_checks()
    names = [check.__name__ for check in CHECKS.get_all() if not isinstance(check, type)]
    assert len(names) >= 14  # schemathesis 4's built-in checks, the list -c all names
    config = schema.config.checks_config_for(operation=None, phase=None)
    assert [name for name in names if not config.get_by_name(name=name).enabled] == []


# The event stream follows main forever by default: it is tested in test_events.py, not fuzzed here.
@schema.exclude(path="/events").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_within_its_spec_and_never_5xx(case):
    case.call_and_validate()
