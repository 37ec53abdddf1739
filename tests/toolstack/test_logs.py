"""Log lines: text for a person, one JSON object per line for a pipeline, each with the user, task and VM
it was logged for."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading

import pytest

from tests.toolstack.conftest import ROOT
from toolstack import logs


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield lambda log_format, level=logging.INFO: (logs.configure(level, log_format, stream), stream)[1]
    for handler in list(root.handlers):
        if getattr(handler, "_toolstack", False):
            root.removeHandler(handler)
    root.setLevel(level)


def test_a_json_line_carries_the_bound_user_task_and_vm_and_the_callers_extra_fields(captured):
    stream = captured("json")
    with logs.bound(user="alice", task="t-1"), logs.bound(vm="web1"):
        logging.getLogger("toolstack.tasks").info("started %s", "vm start", extra={"operation": "start"})
    logging.getLogger("toolstack.tasks").warning("after the block")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "started vm start"
    assert (first["level"], first["logger"]) == ("info", "toolstack.tasks")
    assert (first["user"], first["task"], first["vm"], first["operation"]) == (
        "alice",
        "t-1",
        "web1",
        "start",
    )
    assert first["time"].endswith("+00:00")
    assert "user" not in second and "task" not in second, "the context ends with its block"


def test_an_exception_is_one_json_line_with_its_traceback(captured):
    stream = captured("json")
    try:
        raise RuntimeError("hypervisor went away")
    except RuntimeError:
        logging.getLogger("toolstack").exception("task failed")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert "RuntimeError: hypervisor went away" in record["exception"]


def test_text_lines_show_the_context_after_the_message(captured):
    stream = captured("text")
    with logs.bound(user="bob", task="t-2", vm=None):
        logging.getLogger("toolstack.api").warning("slow request")
    assert stream.getvalue() == "warning toolstack.api: slow request [user=bob task=t-2]\n"


def test_the_context_is_per_thread(captured):
    stream = captured("json")
    seen: list[dict[str, str]] = []
    with logs.bound(user="main-thread"):
        worker = threading.Thread(target=lambda: seen.append(logs.context()))
        worker.start()
        worker.join()
    assert seen == [{}]
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, 0, logging.WARNING),
        (1, 0, logging.INFO),
        (2, 0, logging.DEBUG),
        (5, 0, logging.DEBUG),
        (0, 1, logging.ERROR),
        (0, 2, logging.CRITICAL),
        (1, 1, logging.WARNING),
    ],
)
def test_v_and_q_step_the_level(verbose, quiet, level):
    assert logs.level_for(verbose, quiet) == level


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown log format 'xml': expected one of text, json"):
        logs.formatter("xml")


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a process, on a simulator; its author is Alice."""
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "TOOLSTACK_REPO": str(tmp_path / "state.git"),
        "TOOLSTACK_DRIVER": f"sim://{tmp_path}/sim",
        "TOOLSTACK_CONFIG": "",
    }
    command = [sys.executable, "-m", "toolstack.cli", "--author", "Alice <alice@example.org>", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_the_cli_logs_json_lines_with_its_author_as_the_user_and_the_task_and_vm(tmp_path):
    cli(tmp_path, "init", "--name", "test")
    cli(tmp_path, "vm", "create", "web1", "--memory", "256M")
    started = cli(tmp_path, "--log-format", "json", "-v", "vm", "start", "web1")
    lines = [json.loads(line) for line in started.stderr.splitlines()]  # each line is one JSON object
    tasks = [line for line in lines if line["message"].startswith("task ")]
    assert [line["message"].split(":")[0] for line in tasks] == ["task started", "task finished"]
    for line in tasks:
        assert (line["user"], line["vm"], line["level"]) == ("Alice", "web1", "info")
        assert line["task"]
    assert tasks[0]["task"] == tasks[1]["task"]


def test_the_clis_v_shows_info_vv_debug_and_q_hides_info(tmp_path):
    cli(tmp_path, "init", "--name", "test")
    cli(tmp_path, "vm", "create", "web1", "--memory", "256M")

    def levels(*flags: str) -> set[str]:
        paused = cli(tmp_path, "--log-format", "json", *flags, "vm", "pause", "web1")
        cli(tmp_path, "vm", "resume", "web1")  # for the next pause
        return {json.loads(line)["level"] for line in paused.stderr.splitlines()}

    cli(tmp_path, "vm", "start", "web1")
    assert levels("-vv") == {"debug", "info"}
    assert levels("-v") == {"info"}
    assert levels() == set()  # warnings and worse only: there are none
    assert levels("-q") == set()
