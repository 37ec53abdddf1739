from __future__ import annotations

import pytest

from store import Store


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    """The same behaviour is required of the in-memory and the on-disk store."""
    s = Store.memory() if request.param == "memory" else Store.open(tmp_path / "repo")
    yield s
    s.close()


@pytest.fixture
def disk_store(tmp_path):
    s = Store.open(tmp_path / "repo")
    yield s
    s.close()
