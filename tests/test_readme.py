"""The README works as written: its two opening commands match CI, and the complete
"Write your own technique" example runs, loaded with --plugin-path and as an entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
TINY = ["--profile", "cpu", "--set", "num_layers=2", "--set", "model_dim=64", "--set", "train_seq_len=64",
        "--set", "train_batch_tokens=1024", "--set", "val_batch_size=1024", "--set", "val_max_tokens=2048",
        "--set", "iterations=15", "--set", "max_wallclock_seconds=0", "--set", "warmup_steps=0",
        "--set", "progress_bar=false"]


def example_source(name: str = "my_technique.py") -> str:
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", README, re.S)
    assert m, f"README lost its 'Write your own technique' example {name}"
    return m.group(1)


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def golfplan(*args: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "golfplan", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    first, second = bash_blocks()[:2]
    assert "pip install torch==2.13.0" in first and "golfplan study --plugins tidal,parallel,gqa --trials 20" in first
    assert "pip install torch==2.13.0" in second
    tests = second.strip().split(" && ")[-1]  # the README's test command
    assert tests.startswith("python -m pytest -x -q") and "-n auto" in tests
    ci = (REPO / ".ci" / "run").read_text()
    lines = [line.strip() for line in ci.splitlines()]
    assert "pip install -q torch==2.13.0" in ci and tests in lines  # CI runs the README's command as written
    slow = lines.index(f"{tests} -m slow")  # then the slow set, after it
    assert lines.index(tests) < slow and all(not line or line.startswith("#") for line in lines[slow + 1:])
    assert ci.index("torch==2.13.0") < ci.index("-e '.[test]'")


def test_example_technique_via_plugin_path(tmp_path, dataset):
    f = tmp_path / "my_technique.py"
    f.write_text(example_source())
    check = golfplan("check", "--plugin-path", str(f), "--plugins", "confidence_penalty,tidal", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"]
    run = golfplan("run", "--plugin-path", str(f), "--plugins", "confidence_penalty", "--set",
                   "confidence_penalty.beta=0.02", *TINY, "--no-check", "--json", "--out", str(tmp_path / "runs"))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout[run.stdout.index("{\n"):])
    assert result["status"] == "complete" and result["plugins"] == {"confidence_penalty": {"beta": 0.02}}


def test_example_technique_changes_the_loss(dataset):
    import torch

    namespace: dict = {}
    exec(compile(example_source(), "my_technique.py", "exec"), namespace)
    term = namespace["ConfidencePenalty"](beta=0.05).on_loss(config=None)

    class Ctx:
        logits = torch.zeros(3, 8)  # uniform predictions: entropy ln 8

    assert abs(term(Ctx()).item() + 0.05 * torch.log(torch.tensor(8.0)).item()) < 1e-6


def test_example_technique_as_an_entry_point(tmp_path, dataset):
    """The entry-point way: an installed distribution whose entry point in group 'golfplan' names the module."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_technique.py").write_text(example_source())
    toml = re.search(r"\[project\.entry-points\.golfplan\]\n(.*?)\n", README).group(1)
    name, value = [s.strip().strip('"') for s in toml.split("=")]
    dist = site / "my_technique_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-technique-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[golfplan]\n{name} = {value}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]))
    show = golfplan("plugins", "show", "confidence_penalty", "--json", env=env)
    assert show.returncode == 0, show.stderr
    info = json.loads(show.stdout)
    assert info["origin"] == "entry point my_technique" and info["params"]["beta"]["default"] == 0.01
    check = golfplan("check", "--plugins", "confidence_penalty", "--json", env=env)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout + check.stderr


def test_lookahead_example_pulls_the_weights_back_every_k_steps(tmp_path, dataset):
    import torch

    from golfplan.core.hooks import build_model, resolve
    from golfplan.core.state import Clock
    from golfplan.registry import Registry
    from tests.conftest import tiny_config

    f = tmp_path / "lookahead.py"
    f.write_text(example_source("lookahead.py"))
    la = Registry(plugin_paths=[str(f)]).instantiate({"lookahead": {"k": 2, "alpha": 0.5}})[0]
    torch.manual_seed(0)
    model = build_model(resolve([la]), tiny_config())
    p = next(model.parameters())
    start = p.detach().clone()
    with torch.no_grad():
        la.on_step(model=model, optimizers=[], clock=Clock(step=0))  # snapshots the slow weights
        p.add_(1.0)  # what an optimizer step might do
        la.on_step(model=model, optimizers=[], clock=Clock(step=1))  # step 2 of k=2: sync
    assert torch.allclose(p, start + 0.5) and torch.allclose(la.slow[0], start + 0.5)
    cmd = re.search(r"golfplan run --plugin-path lookahead.py (.*)", README).group(1).split()
    run = golfplan("run", "--plugin-path", str(f), *cmd, *TINY, "--json", "--out", str(tmp_path / "runs"))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["status"] == "complete" and result["plugins"]["lookahead"] == {"k": 4, "alpha": 0.5}
