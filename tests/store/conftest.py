from __future__ import annotations

import sys

import pytest

from store import Store

# Under Pyodide (make test-pyodide) there is no disk backend to test: no flock, no fsync that means anything,
# no processes. The same tests run there against the store in memory.
BACKENDS = ["memory"] if sys.platform == "emscripten" else ["memory", "disk"]


# Fixtures that mean a repository on disk or the git CLI beside it: a test using one is `native`.
NATIVE_FIXTURES = {"disk_store", "tmp_path", "tmpdir", "run_git"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NATIVE_FIXTURES & set(getattr(item, "fixturenames", ())) or "[disk]" in item.nodeid:
            item.add_marker(pytest.mark.native)


@pytest.fixture(params=BACKENDS)
def store(request):
    """The same behaviour is required of the in-memory and the on-disk store."""
    # tmp_path only for the disk store: a test that asks for it is `native`, and the memory store's are not.
    s = (
        Store.memory()
        if request.param == "memory"
        else Store.open(request.getfixturevalue("tmp_path") / "repo")
    )
    yield s
    s.close()


@pytest.fixture
def disk_store(tmp_path):
    s = Store.open(tmp_path / "repo")
    yield s
    s.close()
