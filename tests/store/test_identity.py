"""Who a commit names when the caller names nobody: the author git itself would pick."""

from __future__ import annotations

import getpass
import socket

import pytest

from store import Store
from store.objects import default_identity, normalise_identity

LOGIN_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


@pytest.fixture
def no_identity_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", *LOGIN_VARIABLES):
        monkeypatch.delenv(variable, raising=False)


def test_git_author_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ada@example.org")
    assert default_identity() == "Ada <ada@example.org>"


@pytest.mark.native  # a password database
def test_without_variables_the_account_name_is_used_as_getpass_finds_it(
    no_identity_in_environment: None,
) -> None:
    assert default_identity() == f"{getpass.getuser()} <{getpass.getuser()}@{socket.gethostname()}>"


def test_login_variables_are_read_at_each_commit(
    no_identity_in_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = default_identity()
    monkeypatch.setenv("USER", "operator")
    assert default_identity().startswith("operator <operator@")
    monkeypatch.setenv("LOGNAME", "first")
    assert default_identity().startswith("first <"), "LOGNAME comes first, as in getpass.getuser"
    monkeypatch.delenv("USER")
    monkeypatch.delenv("LOGNAME")
    assert default_identity() == before


def test_a_transaction_without_author_commits_as_the_default_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Grace")
    monkeypatch.delenv("GIT_AUTHOR_EMAIL", raising=False)
    store = Store.memory()
    with store.branch("main").transaction("set") as tx:
        tx.set("a", b"1")
    assert store.branch("main").log()[0].author == normalise_identity(None)
    assert normalise_identity(None).startswith("Grace <Grace@")
