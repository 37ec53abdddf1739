"""What ``serve`` appends of other processes' Prometheus textfiles (:mod:`toolstack.textfiles`): files that
check, a directory's ``*.prom`` files, and for each file left out a reason and ``toolstack_textfile_up 0``;
the result always parses."""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from toolstack import metrics, textfiles

GOOD = '# HELP job_runs_total Runs\n# TYPE job_runs_total counter\njob_runs_total{kind="a"} 3\n'


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def up_of(found: dict, path: Path) -> float:
    return found[("toolstack_textfile_up", (("file", str(path)),))]


def test_a_directory_stands_for_its_prom_files_and_the_whole_scrape_parses(tmp_path):
    directory = tmp_path / "textfiles"
    directory.mkdir()
    (directory / "a.prom").write_text(GOOD)
    (directory / "b.prom").write_text("# TYPE other_gauge gauge\nother_gauge 1.5\n")
    (directory / "notes.txt").write_text("not a textfile")
    own = metrics.exposition()
    found = parsed(own + textfiles.exposition([str(directory)], own))
    assert found[("job_runs_total", (("kind", "a"),))] == 3
    assert found[("other_gauge", ())] == 1.5
    assert up_of(found, directory / "a.prom") == up_of(found, directory / "b.prom") == 1
    assert ("toolstack_textfile_up", (("file", str(directory / "notes.txt")),)) not in found


def test_files_left_out_are_said_so_and_an_optional_missing_file_is_not_mentioned(tmp_path):
    broken = tmp_path / "broken.prom"
    broken.write_text('# TYPE x counter\nx_total{a="1"} three\n')
    twice = tmp_path / "twice.prom"
    twice.write_text(GOOD)
    absent = tmp_path / "absent.prom"
    good = tmp_path / "good.prom"
    good.write_text(GOOD)
    own = metrics.exposition()
    text = textfiles.exposition(
        [str(good), str(broken), str(twice), str(absent)], own, optional=[str(absent)]
    )
    found = parsed(own + text)
    assert [up_of(found, path) for path in (good, broken, twice, absent)] == [1, 0, 0, 0]
    assert f"# textfile {broken} left out: line 2: 'three' is not a number" in text
    assert f"# textfile {twice} left out: line 2: metric job_runs_total is exposed already" in text
    optional = textfiles.exposition([], own, optional=[str(absent), str(good)])
    assert str(absent) not in optional and up_of(parsed(optional), good) == 1
    assert textfiles.exposition([], own, optional=[str(absent)]) == ""


def test_the_agents_file_is_written_atomically_in_the_text_format(tmp_path):
    path = tmp_path / "agent.prom"
    metrics.AGENT_ROUNDS.inc("ok")
    metrics.write_textfile(str(path), metrics.exposition(metrics.AGENT))
    found = parsed(path.read_text())
    assert found[("toolstack_agent_rounds_total", (("outcome", "ok"),))] >= 1
    assert ("toolstack_agent_drift_found_total", ()) in found
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.prom"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_an_agent_that_cannot_write_its_metrics_says_so_once_until_it_can_again(tmp_path, caplog):
    from toolstack.agent import _write_metrics

    missing = str(tmp_path / "no-such-directory" / "agent.prom")
    with caplog.at_level(logging.WARNING, logger="toolstack.agent"):
        failing = False
        for _ in range(3):  # three rounds
            failing = _write_metrics(missing, failing)
        assert failing and len(caplog.records) == 1, caplog.text
        assert _write_metrics(str(tmp_path / "agent.prom"), failing) is False
        assert _write_metrics(missing, False) and len(caplog.records) == 2
