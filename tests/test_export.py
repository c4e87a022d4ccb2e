"""Code packing, ``golfplan export`` and ``golfplan check --legal``.

The packed train_gpt.py is one file that serves every golfplan module it needs from itself and
trains exactly as the run it was packed from: same val_bpb, same artifact bytes, and the code bytes
the run reported are its length. The legal check passes a legal run and names the rule an illegal
one breaks; its data probe and significance test can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golfplan.check.legal import check_legal, data_probe, load_runs, significance
from golfplan.cli import main
from golfplan.core.errors import ConfigError
from golfplan.core.data.shards import VAL_PATTERN, load_data_shard, shard_files
from golfplan.core.export.pack import code_size, env_overrides
from golfplan.core.export.packer import pack
from golfplan.core.export.wrapper import unpack
from golfplan.core.technique import Technique, hookimpl
from tests.conftest import tiny_config

STEPS = 8  # enough to land well below an untrained model's BPB on the tiny config
FILES = {"train_gpt.py", "submission.json", "README.md", "requirements.txt"}


def data_env(tmp_path: Path) -> dict[str, str]:
    """The environment a packed file runs in: the test dataset, one thread, a fresh working directory."""
    from golfplan.core.data import corpus

    env = dict(os.environ, DATA_PATH=str(corpus.dataset_dir(1024)), TOKENIZER_PATH=str(corpus.tokenizer_path(1024)),
               OMP_NUM_THREADS="1", GOLFPLAN_THREADS="1", RUN_ID="probe")
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset):
    """Two tiny runs with tidal: a legal one, and one whose artifact limit (100 kB) it exceeds."""
    from golfplan.core.train.trainer import train
    from golfplan.registry import Registry

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, limit in (("legal", 16_000_000), ("over", 100_000)):
        result = train(tiny_config(iterations=STEPS, artifact_limit_bytes=limit), Registry().instantiate({"tidal": {}}),
                       run_dir=root / name, log=lambda m: None)
        assert result.status == "complete", result.reason
        out[name] = root / name
    return out


def test_pack_is_deterministic_seed_free_and_is_the_code_size():
    from golfplan.registry import Registry

    techniques = Registry().instantiate({"tidal": {}})
    a = pack(tiny_config(), techniques)
    assert pack(tiny_config(), Registry().instantiate({"tidal": {}})).code == a.code
    assert pack(tiny_config(seed=42, data_path="/elsewhere"), techniques).code == a.code  # read from SEED / DATA_PATH
    assert pack(tiny_config(), Registry().instantiate({"tidal": {"warmup_frac": 0.3}})).code != a.code
    assert code_size(tiny_config(), techniques) == len(a.code)
    lines = a.code.decode("ascii").splitlines()
    assert len(lines) == 4 and lines[:2] == ["import zpaq", "n=0"] and lines[3].startswith("exec(zpaq.decompress(")
    digits = lines[2][lines[2].index('"""') + 3: lines[2].rindex('"""')]
    assert digits and not set(digits) & set('"\\') and all(" " <= c <= "~" for c in digits)
    program = unpack(a.code)
    assert "'golfplan.core.train.trainer':" in program and "'golfplan.plugins.tidal':" in program
    for absent in ("golfplan.registry", "golfplan.check", "golfplan.cli", "golfplan.planner", "golfplan.core.export.packer",
                   "golfplan.plugins.parallel"):
        assert f"'{absent}" not in program, absent
    assert a.source_bytes > a.minified_bytes > len(a.code)


REPO = Path(__file__).resolve().parents[1]
CODE_LIMIT = 36_000  # the frontier's packed train_gpt.py at most (the record's: 31,999 B)


def test_the_frontier_packs_within_its_code_budget(tmp_path):
    """studies/frontier.yaml on 8xh100, configured as a run of it is, packs to at most CODE_LIMIT
    bytes, and what only the library, the planner and the catalogue use is not in it."""
    from golfplan.core.config import load_spec
    from golfplan.core.hooks import compose
    from golfplan.registry import Registry

    (tmp_path / "fineweb_val_bytes_000000.bin").write_bytes(b"")  # case_ops checks the sidecar is there
    spec = load_spec("8xh100", REPO / "studies" / "frontier.yaml",
                     overrides={"data_path": str(tmp_path), "tokenizer_path": str(tmp_path / "tok.model")})
    comp = compose(Registry().instantiate(spec.plugins), spec.config, spec.explicit)
    packed = pack(comp.config, comp.techniques)
    assert len(packed.code) <= CODE_LIMIT, f"{len(packed.code):,} B: see benchmarks/code_size.py for what costs it"
    assert len(packed.code) == code_size(comp.config, comp.techniques)
    assert {"golfplan.plugins.ttt_lora", "golfplan.plugins.gptq", "golfplan.core.train.trainer"} <= set(packed.modules)
    assert not {"golfplan.core.data.corpus", "golfplan.core.yamlfile", "golfplan.core.export.shake"} & set(packed.modules)
    program = unpack(packed.code)
    for absent in ("source_result", "hook_reference", "RunSpec", "pydoc_data"):
        assert absent not in program, absent
    assert not re.search(r"def configure\(\w+,", program)  # no plugin's configure: the config is baked
    assert "pluggy" in packed.third_party and "python_minifier" not in packed.third_party


DRIVER = ("import json,runpy,sys\n"
          "try:\n    runpy.run_path(sys.argv[1], run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
          "mods = {n: getattr(m, '__file__', None) for n, m in sys.modules.items() if n.startswith('golfplan')}\n"
          "print('MODULES=' + json.dumps([code, mods]))\n")


def run_packed_file(python: str, script: Path, work: Path, env: dict[str, str]) -> dict:
    """Run a packed train_gpt.py in ``work``; assert every golfplan module came out of the file itself
    (none from this checkout or an installed golfplan); return its result.json."""
    work.mkdir()
    proc = subprocess.run([python, "-c", DRIVER, str(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("MODULES=")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    code, mods = json.loads(line[len("MODULES="):])
    assert code == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "golfplan.core.train.trainer" in mods and "golfplan.plugins.tidal" in mods
    outside = {n: p for n, p in mods.items() if not str(p).startswith(str(script) + "/")}
    assert not outside, f"imported from outside the packed file: {outside}"
    assert (work / "logs" / "probe.txt").read_text().count("final_int8_zlib_roundtrip_exact val_loss:") == 1
    return json.loads((work / "result.json").read_text())


def test_env_overrides_read_the_challenge_variables():
    got = env_overrides({"SEED": "42", "ITERATIONS": "5", "TIE_EMBEDDINGS": "0", "MATRIX_LR": "0.03",
                         "DATA_PATH": "/data/sp1024", "RUN_ID": "x", "UNRELATED": "1"})
    assert got == {"seed": 42, "iterations": 5, "tie_embeddings": False, "matrix_lr": 0.03, "data_path": "/data/sp1024"}
    with pytest.raises(ConfigError, match="ITERATIONS='many'"):
        env_overrides({"ITERATIONS": "many"})


def export(run: Path, out: Path, *extra: str) -> tuple[int, Path | None]:
    rc = main(["export", str(run), "--out", str(out), "--author", "tester", *extra])
    folders = [p for p in out.glob("*") if p.is_dir()] if out.is_dir() else []
    return rc, (folders[0] if folders else None)


def test_export_writes_the_submission_folder_and_its_script_reproduces_the_run(runs, tmp_path, capsys):
    """The folder has every file; its train_gpt.py, run from nothing but itself, trains the same model."""
    run = runs["legal"]
    result = json.loads((run / "result.json").read_text())
    rc, folder = export(run, tmp_path / "out")
    assert rc == 0 and folder is not None, capsys.readouterr().out
    assert {p.name for p in folder.iterdir()} == FILES | {"train_seed1337.log"}
    sub = json.loads((folder / "submission.json").read_text())
    script = folder / "train_gpt.py"
    assert sub["bytes_code"] == script.stat().st_size == result["code_bytes"]
    assert sub["bytes_total"] == result["artifact_bytes"] and sub["val_bpb"] == pytest.approx(result["val_bpb"])
    import torch

    assert sub["pytorch_version"] == torch.__version__  # from the run's start event
    for key in ("author", "github_id", "name", "blurb", "date", "track", "val_loss", "seeds", "seed_results",
                "hardware", "pytorch_version", "compliance"):
        assert key in sub, key
    readme = (folder / "README.md").read_text()
    for needle in ("## Results", "| 1337 |", "## Configuration", "tidal:", "## Techniques", "golfplan's seed log: N2",
                   "ok   artifact", "ok   data", "SEED=1337"):
        assert needle in readme, needle
    reqs = (folder / "requirements.txt").read_text()
    assert "zpaq==" in reqs and "torch==" in reqs and "python-minifier" not in reqs and "golfplan" not in reqs
    work = tmp_path / "rerun"
    again = run_packed_file(sys.executable, script, work, data_env(tmp_path))
    assert again["val_bpb"] == result["val_bpb"] and again["val_loss"] == result["val_loss"]
    assert again["artifact_bytes"] == result["artifact_bytes"] and again["code_bytes"] == script.stat().st_size
    assert (work / "final_model.int8_zlib.ptz").read_bytes() == (run / "final_model.int8_zlib.ptz").read_bytes()


def test_export_refuses_an_illegal_run_unless_forced(runs, tmp_path, capsys):
    rc, folder = export(runs["over"], tmp_path / "out")
    out = capsys.readouterr().out
    assert rc == 1 and folder is None
    assert out.strip().splitlines()[-1].startswith("error: not exported: artifact:")
    rc, folder = export(runs["over"], tmp_path / "out", "--force")
    assert rc == 0 and folder is not None
    assert json.loads((folder / "submission.json").read_text())["compliance"]["artifact"] == "fail"


def test_check_legal_passes_a_legal_run_and_names_the_rule_of_an_illegal_one(runs, capsys):
    assert main(["check", "--legal", "--run", str(runs["legal"])]) == 0
    out = capsys.readouterr().out
    assert "legal: every rule holds" in out and "ok   causality" in out
    assert main(["check", "--legal", "--run", str(runs["over"])]) == 1
    out = capsys.readouterr().out
    assert "FAIL artifact" in out and "not legal: artifact:" in out


def test_check_legal_without_runs_estimates(dataset, capsys):
    assert main(["check", "--legal", "--profile", "1xh100", "--set", "model_dim=1024", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["reason"].startswith("artifact:") and "estimate" in report["reason"]
    assert {r["name"]: r["status"] for r in report["rules"]}["train_time"] == "pass"  # capped at 600 s


class PeekAtValidation(Technique):
    """Illegal on purpose: its calibration reads a validation shard."""

    name = "peek_at_validation"
    summary = "calibrates on validation tokens (illegal)"

    @hookimpl
    def calibrate(self, model, batches, config):
        load_data_shard(shard_files(config.data_path, VAL_PATTERN)[0])
        return {}


class NeedsAMissingModule(Technique):
    """An evaluation strategy that cannot run where it is checked: it imports what is not installed."""

    name = "needs_a_missing_module"
    summary = "evaluates with a module that is not installed"

    @hookimpl
    def evaluate(self, model, val, config, final):
        import golfplan_no_such_module  # noqa: F401

        return None


def test_a_causality_probe_that_cannot_run_fails_the_legal_check():
    from golfplan.check.legal import causality_rule

    rule = causality_rule(tiny_config(), [NeedsAMissingModule()])
    assert rule.status == "fail" and "could not run: ModuleNotFoundError" in rule.message, rule.message
    assert causality_rule(tiny_config(), []).status == "pass"


def test_data_probe_catches_calibration_on_validation_tokens(dataset):
    rule = data_probe(tiny_config(), [PeekAtValidation()])
    assert rule.status == "fail", rule.message
    assert "calibration read a validation shard (fineweb_val_" in rule.message
    assert "tests.test_export.calibrate" in rule.message  # the same probe passes the legal runs above


def test_significance_is_the_challenges_rule():
    ok, p, how = significance([2.300, 2.301, 2.299], [2.320, 2.322, 2.318])
    assert ok and p < 0.01 and "Welch" in how
    ok, p, _ = significance([2.317, 2.318, 2.316], [2.320, 2.322, 2.318])  # better, but by less than 0.005 nats
    assert not ok and p > 0.01
    ok, p, how = significance([2.300, 2.301, 2.299], ref_value=2.32)
    assert ok and p < 0.01 and "one-sample" in how


def test_legal_report_on_several_seeds_gives_the_p_value(runs, tmp_path):
    """Two seeds of the same run against a far worse reference value: significant, with its p-value."""
    from golfplan.check.legal import run_composition

    a, b = tmp_path / "s1", tmp_path / "s2"
    shutil.copytree(runs["legal"], a)
    shutil.copytree(runs["legal"], b)
    data = json.loads((b / "result.json").read_text())
    data["val_loss"] -= 0.001  # a second seed, a little better
    (b / "result.json").write_text(json.dumps(data))
    recs = load_runs([a, b])
    comp = run_composition(recs[0])
    config, techniques = comp.config, comp.techniques
    report = check_legal(config, techniques, recs, reference=str(data["val_bpb"] * 1.1), probes=False)
    rule = report.rule("significance")
    assert rule.status == "pass" and report.p_value is not None and report.p_value < 0.01, rule.message


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pip-cache")


@pytest.mark.slow
def test_exported_script_in_a_fresh_venv(runs, tmp_path, pip_cache):
    """The exported folder, in a virtual environment holding only its requirements.txt (torch comes from
    the local wheel; the rest from the package index, cached for the session): same val_bpb, same bytes."""
    run = runs["legal"]
    result = json.loads((run / "result.json").read_text())
    assert export(run, tmp_path / "out")[0] == 0
    folder = next((tmp_path / "out").iterdir())
    venv = tmp_path / "venv"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_CACHE_DIR=str(pip_cache))
    env.pop("PYTHONPATH", None)
    pip = subprocess.run([py, "-m", "pip", "install", "-q", "-r", str(folder / "requirements.txt")], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    setup_s = time.perf_counter() - t0
    assert subprocess.run([py, "-c", "import golfplan"], cwd=tmp_path, env=env, capture_output=True).returncode != 0
    again = run_packed_file(py, folder / "train_gpt.py", tmp_path / "work", data_env(tmp_path))
    assert again["val_bpb"] == result["val_bpb"] and again["artifact_bytes"] == result["artifact_bytes"]
    print(f"fresh venv: setup {setup_s:.0f}s, run {time.perf_counter() - t0 - setup_s:.0f}s")


def test_train_time_counts_calibration_as_the_run_accounts_it():
    """``calibration_clock: inside`` charges the Hessians to the 600 s; ``after`` (the record's accounting)
    charges the loop alone and reports the calibration apart."""
    from golfplan.check.legal import train_time_rule
    from golfplan.core.config import Config

    run = {"train_time_s": 599.6, "calibration_s": 4.7, "device": "cuda:0", "world_size": 8, "ms_per_step": 121.3,
           "capped_by": "wallclock"}
    inside = train_time_rule(Config(calibration_clock="inside"), [run], {})
    after = train_time_rule(Config(calibration_clock="after"), [run], {})
    assert inside.status == "fail" and "604.3s training + calibration" in inside.message
    assert after.status == "pass" and "599.6s training (calibration 4.7s after the timer" in after.message
