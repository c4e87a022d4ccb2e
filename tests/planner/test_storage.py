"""Storage URLs: a PostgreSQL URL without its driver names the extra to install, in one line."""

from __future__ import annotations

import sys

import pytest

from golfplan.planner.definition import StudyError


@pytest.fixture
def no_psycopg2(monkeypatch):
    """The driver missing, as in a plain `pip install golfplan`: importing it fails."""
    for name in [m for m in sys.modules if m == "psycopg2" or m.startswith("psycopg2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg2", None)


def test_a_postgres_url_without_its_driver_names_the_extra(no_psycopg2):
    from golfplan.planner.storage import open_storage

    with pytest.raises(StudyError) as e:
        open_storage("postgresql://golfer:SECRET@db-host/golf")
    msg = str(e.value)
    assert "pip install 'golfplan[postgres]'" in msg and "psycopg2" in msg
    assert "SECRET" not in msg and "golfer:***@db-host" in msg and "\n" not in msg


def test_the_command_ends_with_one_error_line_naming_the_extra(no_psycopg2, capsys, tmp_path, monkeypatch):
    from golfplan.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["report", "some-study", "--storage", "postgresql://golfer@db-host/golf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and err[0].endswith("pip install 'golfplan[postgres]'")
