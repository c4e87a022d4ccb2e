"""A study refuses a configuration whose check passes its stage time limit (``--check-timeout``,
``GOLFPLAN_CHECK_TIMEOUT``) with kind ``timeout``, the way it refuses a run that passes its hard limit."""

from __future__ import annotations

import textwrap

import pytest

from golfplan.planner.definition import Experiment

from .conftest import Sim, make_def
from .test_robustness import MISBEHAVING  # its `frozen` plugin never returns from configure


@pytest.mark.parametrize("where", ["in its own process", "in the trial's run"])
def test_a_check_stage_past_its_limit_refuses_the_configuration_as_a_timeout(make_planner, tmp_path, monkeypatch,
                                                                            where):
    f = tmp_path / "misbehaving.py"
    f.write_text(textwrap.dedent(MISBEHAVING))
    monkeypatch.setenv("GOLFPLAN_CHECK_TIMEOUT", "2")  # what `golfplan study --check-timeout 2` sets
    sim = Sim()
    d = make_def(mode="experiments", checks="full", baseline=False, trial_timeout=300, plugin_path=[str(f)],
                 experiments=[Experiment("F", "frozen", plugins={"frozen": {}})])
    # a custom runner: the check runs as `golfplan check`; the default runner: inside the run's process
    p = make_planner(d, sim if where == "in its own process" else None)
    assert p.run().stopped == "done"
    (trial,) = [t for t in p.study.get_trials() if t.user_attrs.get("label") == "frozen"]
    ua = trial.user_attrs
    assert (ua["status"], ua["failure"]) == ("refused", "timeout"), ua
    assert "plugin 'frozen' still running after the stage's limit of 2s" in ua["reason"] and not ua.get("runs")
    assert ua["check"]["ok"] is False and sim.calls == []
