"""Property-based tests against the generated OpenAPI spec: no 5xx, and every response (status code, content
type, body) matches the spec. Requests go through the real app and toolstack on a real repository (made at
import: schemathesis parametrizes from a schema object; ``from_fixture`` does not work with this pytest).

``API_FUZZ_EXAMPLES`` sets the examples per operation (25 by default; 100 passes too, in about 30 s).
"""

from __future__ import annotations

import os
import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.toolstack.api.conftest import AUTH, TOKEN
from toolstack.api import ApiSettings, create_app
from toolstack.ops import Toolstack

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))

_workdir = tempfile.TemporaryDirectory(prefix="toolstack-api-schemathesis-")
_ts = Toolstack.init(f"{_workdir.name}/state.git", f"sim://{_workdir.name}/sim", author="schemathesis")
app = create_app(_ts, TOKEN, ApiSettings(default_wait=5))
# A VM that generated requests can find by name ("web1") or act on; the rest they create themselves.
_ts.create("web1", memory=64)

schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app  # type: ignore[attr-defined]


@pytest.fixture(scope="module", autouse=True)
def _close_toolstack():
    yield
    _ts.close()
    _workdir.cleanup()


# The event stream follows main forever by default: it is tested in test_events.py, not fuzzed here.
@schema.exclude(path="/events").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_within_its_spec_and_never_5xx(case):
    case.call_and_validate(
        headers=AUTH,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
