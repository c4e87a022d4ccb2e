"""A study's storage opens in optuna-dashboard as it is: a finished golfplan study, served by the
dashboard's own WSGI app, reads back over HTTP with what golfplan stores for each trial (its
plugins, val_bpb, ms/step and its ratio to the baseline's, steps, artifact size as sortable numbers,
failure kind). Skipped where optuna-dashboard is not installed (the
``test`` extra installs it)."""

from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from tests.conftest import golfplan_in_process

# A runner with known results (README "Custom runners"): gqa fails, so one trial carries a failure kind.
SIM = '''
def run(job):
    if "gqa" in job.plugins:
        return {"status": "failed", "failure": "oom", "reason": "simulated: out of memory"}
    bpb = 2.5 - 0.02 * ("tidal" in job.plugins) + 0.001 * (job.seed % 7)
    return {"status": "complete", "val_bpb": bpb, "steps": 40, "ms_per_step": 25.0 + 5 * ("tidal" in job.plugins),
            "artifact_bytes": 1_000_000}
'''


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # no access log on the test's stderr
        pass


@pytest.fixture
def served(tmp_path):
    """(base URL, storage URL) of a finished 3-trial study served by optuna-dashboard on a free port."""
    dashboard = pytest.importorskip("optuna_dashboard")
    (tmp_path / "sim.py").write_text(SIM)
    storage = f"sqlite:///{tmp_path / 'golfplan.db'}"
    out = golfplan_in_process("study", "--plugins", "tidal,gqa", "--trials", "3", "--profile", "cpu", "--runner",
                              f"{tmp_path / 'sim.py'}:run", "--checks", "none", "--storage", storage,
                              "--study", "dash", "--no-report", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    server = make_server("127.0.0.1", 0, dashboard.wsgi(storage), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", storage
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_the_dashboard_serves_a_finished_study_with_what_golfplan_stores(served):
    import optuna

    base, storage = served
    studies = {s["study_name"]: s for s in get(f"{base}/api/studies")["study_summaries"]}
    assert set(studies) == {"dash"}
    detail = get(f"{base}/api/studies/{studies['dash']['study_id']}")
    trials = {t["number"]: t for t in detail["trials"]}
    stored = {t.number: t for t in optuna.load_study(study_name="dash", storage=storage).get_trials()}
    assert set(trials) == set(stored) and len(trials) == 3  # the baseline, all on, one sampled
    for number, t in stored.items():
        shown = trials[number]
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        # user attributes arrive as text: strings as they are, numbers as str(), the rest as JSON
        assert attrs["label"] == t.user_attrs["label"] and attrs["status"] == t.user_attrs["status"]
        assert json.loads(attrs["plugins"]) == t.user_attrs["plugins"]
        assert attrs["failure"] == t.user_attrs["failure"]
        # one seed a trial (the main job's): its run reads back whole (the dashboard cuts an attribute
        # at 1,024 characters, about two runs)
        runs = json.loads(attrs["runs"])
        assert [r["ms_per_step"] for r in runs] == [r["ms_per_step"] for r in t.user_attrs["runs"]]
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert shown["state"] == "Complete" and shown["values"] == [t.value]  # the value is val_bpb
            assert runs[0]["val_bpb"] == t.value and runs[0]["ms_per_step"] in (25.0, 30.0)
    # what a trial measured, as numbers: sortable columns, each read back whole (a number's text)
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    summary = ("val_bpb", "ms_per_step", "ms_per_step_ratio", "steps", "artifact_bytes")
    assert all(sortable[k] for k in summary), sortable
    for number, t in stored.items():
        attrs = {a["key"]: a["value"] for a in trials[number]["user_attrs"]}
        if t.state != optuna.trial.TrialState.COMPLETE:  # nothing measured: no summary (never a null)
            assert not set(summary) & set(attrs)
            continue
        ms = 30.0 if "tidal" in t.user_attrs["plugins"] else 25.0  # the baseline's is 25
        assert float(attrs["val_bpb"]) == t.value and float(attrs["ms_per_step"]) == ms
        assert float(attrs["ms_per_step_ratio"]) == pytest.approx(ms / 25.0, abs=1e-4)
        assert int(attrs["steps"]) == 40 and int(attrs["artifact_bytes"]) == 1_000_000
    by_label = {stored[n].user_attrs["label"]: trials[n] for n in trials}
    all_on = {a["key"]: a["value"] for a in by_label["all-on"]["user_attrs"]}  # gqa on: the runner failed it
    assert (all_on["status"], all_on["failure"]) == ("failed", "oom") and by_label["all-on"]["state"] != "Complete"
