"""The command line: errors a user can cause are one line and a non-zero exit, never a traceback.

The error paths run ``golfplan.cli.main`` in this process (``tests.conftest.golfplan_in_process``);
``golfplan run`` is also run as the real process once (its summary and ``--json``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import golfplan_in_process as golfplan

TINY = ["--profile", "cpu", "--set", "num_layers=2", "--set", "model_dim=64", "--set", "train_seq_len=64",
        "--set", "train_batch_tokens=1024", "--set", "val_batch_size=1024", "--set", "val_max_tokens=2048",
        "--set", "iterations=12", "--set", "max_wallclock_seconds=0", "--set", "warmup_steps=0",
        "--set", "progress_bar=false"]


def golfplan_process(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "golfplan", *args], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(p, code: int, needle: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], p.stderr


def test_bad_yaml(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("plugins: [tidal\n")
    assert_one_line_error(golfplan("run", "--config", str(f)), 2, "not valid YAML")


def test_unknown_plugin_names_the_closest():
    assert_one_line_error(golfplan("run", "--plugins", "tidel", "--no-check"), 2, "unknown plugin 'tidel'; did you mean 'tidal'")


def test_unknown_key_names_the_closest():
    assert_one_line_error(golfplan("run", "--set", "num_head=4"), 2, "did you mean 'num_heads'")


def test_missing_shards(tmp_path):
    tok = tmp_path / "tok.model"
    tok.write_bytes(b"")
    p = golfplan("run", "--no-check", *TINY, "--data", str(tmp_path), "--tokenizer", str(tok), cwd=tmp_path)
    assert_one_line_error(p, 2, "")
    assert "no shards matching" in p.stderr or "not a SentencePiece model" in p.stderr


def test_wrong_tokenizer(dataset, tmp_path):
    p = golfplan("run", "--no-check", *TINY, "--data", str(dataset), "--tokenizer", str(dataset / "tokenizer.model"),
                 "--vocab-size", "4096", "--out", str(tmp_path))
    assert_one_line_error(p, 2, "has vocab 1024 but the config says vocab_size=4096")


def test_run_refuses_before_training_when_a_check_fails(tmp_path):
    p = golfplan("run", "--plugins", "tidal,cosine", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert p.returncode == 1 and "preflight failed, not training" in p.stderr
    assert "'cosine' and 'tidal' both fill the 'lr_schedule' slot" in p.stderr or \
        "'tidal' and 'cosine' both fill the 'lr_schedule' slot" in p.stderr
    assert not (tmp_path / "runs").exists()


def test_run_prints_the_summary_and_json(dataset, tmp_path):
    p = golfplan_process("run", *TINY, "--plugins", "tidal", "--out", str(tmp_path), "--name", "r1", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)  # --json: standard output holds the JSON and nothing else
    assert result["status"] == "complete" and result["val_bpb"] < result["untrained_val_bpb"]
    assert result["capped_by"] == "steps" and result["threads"] >= 1 and result["artifact_format"] == "int8_zlib"
    assert (tmp_path / "r1" / "result.json").is_file()
    events = [json.loads(line) for line in (tmp_path / "r1" / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "result"
    assert [e for e in events if e["event"] == "val"][-1]["final"] is True
    # a CPU run is its own smoke test: the preflight skips that stage
    assert "preflight" in p.stderr and "skip smoke" in p.stderr and "step:" in p.stderr


def test_the_summary_names_the_round_trip_of_the_runs_own_chain(capsys):
    from golfplan.cli.run import print_summary
    from golfplan.core.result import RunResult

    r = RunResult(val_loss=4.5, val_bpb=2.4, untrained_val_bpb=3.6, steps=40, ms_per_step=800.0,
                  artifact_format="int6-int7_brotli", artifact_bytes=450_000, model_bytes=394_000, code_bytes=56_000)
    print_summary(r)
    assert "(after the int6-int7+brotli round trip)" in capsys.readouterr().out


def test_plugins_table_and_show():
    p = golfplan("plugins")
    assert p.returncode == 0 and "tidal" in p.stdout and "lr_schedule" in p.stdout
    s = golfplan("plugins", "show", "tidal")
    assert s.returncode == 0 and "warmup_frac = 0.382" in s.stdout and "N2" in s.stdout
    assert_one_line_error(golfplan("plugins", "show", "tidle"), 2, "did you mean 'tidal'")


@pytest.mark.parametrize("args,code,needle", [
    (["check", "--plugins", "tidel"], 1, "unknown plugin 'tidel'"),
    (["check", "--plugins", "tidal,cosine"], 1, "both fill the 'lr_schedule' slot"),
    (["check", "--plugins", "gqa", "--set", "gqa.kv_heads=99"], 1, "out of range"),
])
def test_check_static_failures(args, code, needle):
    p = golfplan(*args)
    assert p.returncode == code and needle in p.stdout, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr


def test_check_usage_error_is_exit_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("{{{")
    assert_one_line_error(golfplan("check", "--config", str(f)), 2, "not valid YAML")
