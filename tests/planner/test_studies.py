"""Study files: every file in studies/ loads and validates; bad files fail with a clear error."""

from __future__ import annotations

import pytest
import yaml

from golfplan.check import run_checks
from golfplan.planner.definition import StudyError, load_study_file
from golfplan.planner.resume import base_spec
from golfplan.planner.study import Planner

from .conftest import REPO

# study files (they have a mode); run configs such as studies/frontier.yaml are tests/test_frontier.py's
STUDIES = sorted(p for p in (REPO / "studies").glob("*.yaml") if "mode" in (yaml.safe_load(p.read_text()) or {}))
SEED_FILES = {p for p in STUDIES if p.stem.startswith("wave") or p.stem == "seed_best"}  # with seed references
COMPILE_UNSAFE = {"layer_dropout", "progressive_growing"}  # the seed's U1/U3: refused unless --allow-eager


def test_there_is_a_file_per_wave_and_the_seed_best():
    names = {p.stem for p in STUDIES}
    assert "seed_best" in names and len([n for n in names if n.startswith("wave")]) == 18


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_file_loads_validates_and_passes_the_static_check(path, registry, tmp_path):
    d = load_study_file(path)
    d.validate(registry)
    assert d.name == path.stem and d.mode == "experiments" and d.experiments
    d.profile = "rtx4000"  # the seed's machine
    p = Planner(d, base_spec(d), registry, storage=f"sqlite:///{tmp_path / 'x.db'}", say=lambda m: None)
    for c in p.experiment_configs():
        report = run_checks(p.spec_for(c.plugins, c.config), registry, only_static=True)
        if set(c.plugins) & COMPILE_UNSAFE:
            assert not report.ok and "not compile-safe" in report.reason
        else:
            assert report.ok, f"{path.name} {c.exp_id}: {report.reason}"
    for e in d.experiments if path in SEED_FILES else []:
        assert e.seed.get("status"), f"{e.id} says what the seed reported"


def test_seed_best_is_the_h1_configuration(registry):
    d = load_study_file(REPO / "studies" / "seed_best.yaml")
    h1 = next(e for e in d.experiments if e.id == "H1")
    assert set(h1.plugins) == {"tidal", "softcap", "rope_base", "parallel", "silu2", "head_diversity", "lr",
                               "unet", "gqa", "untied"}
    assert h1.plugins["softcap"] == {"value": 15.0} and h1.plugins["unet"] == {"encoder_layers": 0}
    assert h1.plugins["lr"] == {"embed_lr": 0.8, "matrix_lr": 0.11} and h1.seed["bpb"] == 1.5207


@pytest.mark.parametrize("text,message", [
    ("mode: experiments\nexperimentz: []\n", "unknown key 'experimentz'; did you mean 'experiments'?"),
    ("mode: experiments\nexperiments:\n  - {id: X, plugins: {tidla: {}}}\n", "did you mean 'tidal'?"),
    ("mode: experiments\nexperiments:\n  - {id: X, plugins: {tidal: {warmup: 0.3}}}\n", "has no param 'warmup'"),
    ("mode: experiments\nexperiments:\n  - {id: X, plugins: {tidal: {warmup_frac: 2.0}}}\n", "out of range"),
    ("mode: experiments\nconfig: {num_layerz: 3}\nexperiments: [{id: X}]\n", "unknown config key 'num_layerz'"),
    ("mode: tune\n", "needs plugins to search"),
    ("mode: tune\nplugins: [tidal]\nbatch: 0\n", "'batch' must be >= 1"),
    ("mode: sweep\n", "'mode' must be one of"),
    ("mode: experiments\nexperiments: [{id: X}, {id: X}]\n", "experiment id 'X' is used twice"),
    ("mode: experiments\nfixed: {cosine: {}}\nexperiments: [{id: X, without: [tidal]}]\n", "not among the fixed"),
])
def test_a_bad_study_file_fails_with_a_clear_error(tmp_path, registry, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(StudyError) as e:
        load_study_file(f).validate(registry)
    assert message in str(e.value)


def test_a_study_file_runs_through_the_cli_with_a_simulated_runner(tmp_path, sim_file):
    from .test_cli import run

    out = run(["study", str(REPO / "studies" / "wave08_stack_winners.yaml"), "--profile", "cpu", "--runner",
               f"{sim_file}:run", "--checks", "none", "--storage", f"sqlite:///{tmp_path / 's.db'}"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| W0e | EVERYTHING |" in out.stdout
    md = (tmp_path / "reports" / "wave08_stack_winners" / "wave08_stack_winners.md").read_text()
    assert "Against the seed log:" in md and "| W0a | Tidal+SC20+RoPE5k+HeadDiv | 1.5811 | Good |" in md
