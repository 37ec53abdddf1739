"""The config files: /etc/toolstack/config.toml, then the user's, under the environment and the flags.

Each test runs the real CLI in a fresh process with a clean environment: no $TOOLSTACK_REPO or
$TOOLSTACK_DRIVER unless the test sets one, and the files named by ``XDG_CONFIG_HOME`` (the user's) and
``$TOOLSTACK_CONFIG`` (instead of both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.toolstack.api.conftest import free_port, launch
from tests.toolstack.conftest import ROOT
from toolstack.cli import config


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (config.REPO_ENV, config.DRIVER_ENV, config.CONFIG_ENV)
    }
    env.update(PYTHONPATH=ROOT, XDG_CONFIG_HOME=str(tmp_path / "xdg"), **extra)
    return env


def toolstack(tmp_path: Path, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "toolstack.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment(tmp_path, **env),
        timeout=120,
    )
    assert result.returncode == code, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    return result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def user_file(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "xdg" / "toolstack" / "config.toml", text)


def git_log(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "log", *args], capture_output=True, text=True, check=True
    ).stdout


def test_the_users_file_names_the_repository_driver_host_and_author(tmp_path):
    user_file(
        tmp_path,
        'repo = "pool/state.git"\n'  # relative to the file's own directory
        f'driver = "sim://{tmp_path}/configured.sim"\n'
        'host = "configured-host"\n'
        'author = "Configured Operator <ops@example.org>"\n',
    )
    toolstack(tmp_path, "init", "--name", "pool")
    toolstack(tmp_path, "vm", "create", "web1", "--memory", "64M")
    toolstack(tmp_path, "vm", "start", "web1")
    repo = tmp_path / "xdg" / "toolstack" / "pool" / "state.git"
    assert "Configured Operator <ops@example.org>" in git_log(repo, "-1", "--format=%an <%ae>", "main")
    assert (tmp_path / "configured.sim").is_dir(), "the simulator the file names holds the domain"
    shown = json.loads(toolstack(tmp_path, "--json", "vm", "show", "web1").stdout)
    assert shown["host"] == "configured-host"
    assert not (tmp_path / "toolstack.git").exists(), "the built-in default was not used"


def test_the_environment_overrides_the_file_and_a_flag_overrides_both(tmp_path):
    user_file(tmp_path, 'repo = "from-file.git"\n')
    toolstack(tmp_path, "init", "--name", "a", TOOLSTACK_REPO=str(tmp_path / "from-env.git"))
    assert (tmp_path / "from-env.git").is_dir()
    toolstack(tmp_path, "--repo", str(tmp_path / "from-flag.git"), "init", "--name", "b")
    assert (tmp_path / "from-flag.git").is_dir()
    assert not (tmp_path / "xdg" / "toolstack" / "from-file.git").exists()


def test_the_users_file_overrides_the_system_file_key_by_key(tmp_path, monkeypatch):
    system = write(tmp_path / "etc" / "config.toml", 'repo = "/nowhere/system.git"\nhost = "system-host"\n')
    user = user_file(tmp_path, 'repo = "user.git"\n')
    monkeypatch.setattr(config, "SYSTEM_CONFIG", str(system))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(config.CONFIG_ENV)
    assert config.config_files() == [str(system), str(user)]
    settings = config.settings()
    assert settings.repo == str(user.parent / "user.git")
    assert settings.host == "system-host"


def test_toolstack_config_names_the_only_file_read_and_empty_reads_none(tmp_path):
    user_file(tmp_path, 'repo = "user.git"\n')
    named = write(tmp_path / "service.toml", f'repo = "{tmp_path}/service.git"\n')
    toolstack(tmp_path, "init", "--name", "s", TOOLSTACK_CONFIG=str(named))
    assert (tmp_path / "service.git").is_dir()
    toolstack(tmp_path, "init", "--name", "d", TOOLSTACK_CONFIG="")
    assert (tmp_path / "toolstack.git").is_dir(), "no file: the built-in default"
    missing = toolstack(tmp_path, "vm", "list", TOOLSTACK_CONFIG=str(tmp_path / "missing.toml"), code=1)
    assert "missing.toml: no such file" in missing.stderr


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('rpo = "x.git"\n', "rpo: unknown key (known: repo, driver, host, author, [agent], [serve])"),
        ('[serve]\nbnid = "0.0.0.0"\n', "serve.bnid: unknown key (known: bind, port"),
        ('[serve]\nport = "8427"\n', "serve.port: expected an integer from 0 to 65535, got '8427'"),
        ("[serve]\nport = 70000\n", "serve.port: expected an integer from 0 to 65535, got 70000"),
        ('[serve]\nlog_level = "loud"\n', "serve.log_level: expected one of critical, error"),
        ('host = ""\n', "host: expected a non-empty string"),
        ("serve = 3\n", "serve: expected a table ([serve])"),
        ("[agent]\ninterval = 0\n", "agent.interval: expected a number from 0.01 to 86400, got 0"),
        ("[agent]\nremote = 7\n", "agent.remote: expected a non-empty string, got 7"),
        ('[serve]\nmetrics_textfiles = "a.prom"\n', "serve.metrics_textfiles: expected a list of paths"),
        ("[serve]\nmetrics_textfiles = [1]\n", "serve.metrics_textfiles: expected a non-empty string, got 1"),
        ("[serve]\nusers_file = 3\n", "serve.users_file: expected a non-empty string, got 3"),
        ('repo = "unterminated\n', "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key_and_nothing_is_written(tmp_path, text, named):
    path = user_file(tmp_path, text)
    refused = toolstack(tmp_path, "init", "--name", "x", code=1)
    assert refused.stderr.startswith(f"error: {path}: "), refused.stderr
    assert named in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xdg"], "nothing was created"
    as_json = json.loads(toolstack(tmp_path, "--json", "vm", "list", code=1).stderr)
    assert as_json["error"]["type"] == "ConfigFileError"
    assert named in as_json["error"]["message"]


def test_serve_listens_where_the_file_says_with_the_token_file_it_names(tmp_path):
    port = free_port()
    named = write(
        tmp_path / "service.toml",
        f'repo = "{tmp_path}/served.git"\ndriver = "sim://{tmp_path}/served.sim"\n'
        f'[serve]\nbind = "127.0.0.1"\nport = {port}\ntoken_file = "api-token"\nlog_level = "warning"\n',
    )
    toolstack(tmp_path, "init", "--name", "served", TOOLSTACK_CONFIG=str(named))
    _, server = launch(
        [sys.executable, "-m", "toolstack.cli", "serve"],
        port,
        tmp_path / "serve.log",
        cwd=tmp_path,
        env=environment(tmp_path, TOOLSTACK_CONFIG=str(named)),
    )
    try:
        token = (tmp_path / "api-token").read_text().strip()  # beside the file that named it
        answer = httpx.get(f"http://127.0.0.1:{port}/vms", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_token_commands_and_serve_share_the_users_file_the_file_names(tmp_path):
    port = free_port()
    named = write(
        tmp_path / "etc" / "service.toml",
        f'repo = "{tmp_path}/served.git"\ndriver = "sim://{tmp_path}/served.sim"\n'
        f'[serve]\nport = {port}\nusers_file = "users"\nlog_level = "warning"\n',
    )
    toolstack(tmp_path, "init", "--name", "served", TOOLSTACK_CONFIG=str(named))
    added = toolstack(tmp_path, "--json", "token", "add", "alice", TOOLSTACK_CONFIG=str(named))
    token = json.loads(added.stdout)["token"]
    assert (tmp_path / "etc" / "users").is_file(), "beside the file that named it"
    assert not (tmp_path / "served.api-users").exists()
    _, server = launch(
        [sys.executable, "-m", "toolstack.cli", "serve"],
        port,
        tmp_path / "serve.log",
        cwd=tmp_path,
        env=environment(tmp_path, TOOLSTACK_CONFIG=str(named)),
    )
    try:
        created = httpx.post(
            f"http://127.0.0.1:{port}/vms",
            json={"name": "web", "memory": "64M"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert git_log(tmp_path / "served.git", "-1", "--format=%an").strip() == "alice"


@pytest.mark.parametrize("source", ["README.md", "toolstack/cli/config.py"])
def test_the_documented_sample_file_is_valid(tmp_path, source):
    text = (Path(ROOT) / source).read_text()
    start = text.index("```toml\n") + len("```toml\n")
    sample = write(tmp_path / "config.toml", text[start : text.index("```", start)])
    top, tables = config.read_config_file(str(sample))
    assert set(top) == set(config.TOP_LEVEL)
    assert set(tables["serve"]) == set(config.SERVE), "every [serve] key is documented"
    assert set(tables["agent"]) == set(config.AGENT)


def test_the_agent_takes_its_remote_and_host_from_the_file(tmp_path):
    pool = ["--repo", str(tmp_path / "pool.git"), "--driver", f"sim://{tmp_path}/pool.sim"]
    toolstack(tmp_path, *pool, "init", "--name", "lab")
    toolstack(tmp_path, *pool, "vm", "create", "web", "--memory", "64M")
    named = write(
        tmp_path / "agent.toml",
        f'repo = "agent.git"\ndriver = "sim://{tmp_path}/agent.sim"\nhost = "rack-1"\n'
        f'[agent]\nremote = "{tmp_path}/pool.git"\ninterval = 0.5\nmetrics_file = "agent.prom"\n',
    )
    done = toolstack(tmp_path, "agent", "--once", TOOLSTACK_CONFIG=str(named))
    assert 'toolstack_agent_rounds_total{outcome="ok"} 1.0' in (tmp_path / "agent.prom").read_text()
    assert f"agent rack-1: {tmp_path}/agent.git <-> {tmp_path}/pool.git" in done.stderr
    shown = json.loads(toolstack(tmp_path, "--json", "vm", "show", "web", TOOLSTACK_CONFIG=str(named)).stdout)
    assert shown["name"] == "web", "the agent cloned the pool the file names into the repository it names"


def test_an_agent_without_a_remote_anywhere_is_a_usage_error(tmp_path):
    refused = toolstack(tmp_path, "agent", "--once", code=2, TOOLSTACK_CONFIG="")
    assert "no remote: give --remote URL, or set remote in the config file's [agent] table" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing was created"
