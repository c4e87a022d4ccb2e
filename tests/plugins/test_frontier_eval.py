"""Evaluation strategies and byte accounting: sliding_window, ttt_sgd, ttt_lora, case_ops, the
causality probe (which must pass for every strategy and fail for leaky ones) and the eval clock."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from golfplan.core.data import corpus
from golfplan.check.causality import causality_probe, probe_setup
from golfplan.core.data.shards import load_data_shard, load_validation_bytes, load_validation_tokens
from golfplan.core.evaluate.score import Tally, ValData, eval_val, plain, score_tokens
from golfplan.core.technique import Technique, hookimpl
from golfplan.core.data.tokenizer import build_byte_tables, load_tokenizer
from golfplan.plugins.case_ops import TRANSFORM, CaseOps, decode, encode, original_bytes
from golfplan.plugins.sliding_window import SlidingWindow, sliding_windows
from golfplan.plugins.ttt_lora import TTTLoRA
from golfplan.plugins.ttt_sgd import TTTSGD, windows_by_chunk
from tests.conftest import run_tiny, tiny_config

# the TTT strategies scaled to the probe's tiny model: several chunks, documents and phases
TTT_SGD = dict(chunk_tokens=128, lr=0.01, stride=16, epochs=2)
TTT_LORA = dict(rank=4, chunk=16, context=32, batch_docs=3, prefix_docs=5, phases=2, global_chunk_tokens=96,
                global_batch_seqs=2, lr=0.01, global_lr=0.01)


@pytest.fixture(scope="module")
def probe():
    config = tiny_config(vocab_size=64)
    model, val = probe_setup(config, tokens=512)
    return config, model, val


# ---- sliding_window ---------------------------------------------------------------------


@pytest.mark.parametrize("n,seq_len,stride", [(256, 64, 16), (1000, 256, 64), (300, 64, 64), (97, 32, 5), (10, 64, 16)])
def test_sliding_window_scores_every_token_once_with_nearly_full_context(n, seq_len, stride):
    counts = np.zeros(n + 1, dtype=int)
    for k, (start, first) in enumerate(sliding_windows(n, seq_len, stride)):
        end = min(start + seq_len, n)
        assert 0 <= first < end - start, "a window that scores nothing"
        counts[start + first + 1 : end + 1] += 1
        if k > 0:  # every later window scores tokens with at least seq_len - stride of context
            assert first >= min(seq_len - stride, end - start - 1) or end == n
    assert counts[0] == 0 and (counts[1:] == 1).all()


def test_sliding_window_with_stride_equal_to_the_window_is_plain_eval(probe):
    config, model, val = probe
    loss, bpb = eval_val(model, val)
    s_loss, s_bpb = SlidingWindow(stride=val.seq_len).evaluate(model, val, config, True)
    assert s_loss == pytest.approx(loss, rel=1e-6) and s_bpb == pytest.approx(bpb, rel=1e-6)
    assert plain(model, val) == pytest.approx((loss, bpb), rel=1e-6)
    narrow = SlidingWindow(stride=8).evaluate(model, val, config, True)
    assert narrow[0] != pytest.approx(loss, rel=1e-6)  # more context: other scores
    assert SlidingWindow().evaluate(model, val, config, False) is None  # periodic: the default
    assert SlidingWindow(every_eval=True).evaluate(model, val, config, False) == pytest.approx(
        SlidingWindow().evaluate(model, val, config, True))


@pytest.mark.slow
def test_sliding_window_compiled_scores_as_eager_and_warms_up_off_the_clock():
    """The CUDA path's compiled scoring (here torch.compile's eager backend on the CPU): fixed-shape padded
    batches give the eager scores, and the compile warm-up is reported apart from the evaluation."""
    config = tiny_config(vocab_size=64, compile="on", compile_backend="eager")
    model, val = probe_setup(config, tokens=256)
    with val.clock.measure(final=True):
        compiled = SlidingWindow(stride=16, batch_seqs=4).evaluate(model, val, config, True)
    assert val.clock.warmup_s > 0 and val.clock.eval_s < val.clock.warmup_s
    assert compiled == SlidingWindow(stride=16, batch_seqs=4, compile=False).evaluate(model, val, config, True)


def test_ttt_sgd_windows_fall_in_the_chunk_they_start_scoring():
    chunks = windows_by_chunk(1000, 64, 16, 128)
    assert len(chunks) == 8
    flat = [w for c in chunks for w in c]
    assert flat == sliding_windows(1000, 64, 16)
    for ci, windows in enumerate(chunks):
        assert all(ci * 128 <= start + first < (ci + 1) * 128 for start, first in windows)


# ---- the causality probe -------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [None, SlidingWindow(stride=16), TTTSGD(**TTT_SGD), TTTLoRA(**TTT_LORA)],
                         ids=["plain", "sliding_window", "ttt_sgd", "ttt_lora"])
def test_the_causality_probe_passes_for_every_strategy(probe, strategy):
    config, model, val = probe
    before = {k: v.clone() for k, v in model.state_dict().items()}
    verdict = causality_probe(strategy, model, val, config, cuts=[100, 300])
    assert verdict.ok, str(verdict)
    assert verdict.scores_compared > 0
    if isinstance(strategy, (TTTSGD, TTTLoRA)):  # the update check saw real steps: it was not vacuous
        assert verdict.updates_compared > 0, str(verdict)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def reads_the_next_token(model, val, config, final):
    """Leaky: the input at each column is the token after that column's target."""
    tally, L, n = Tally(val), val.seq_len, val.num_targets
    for k in range(n // L):
        x = val.tokens[torch.arange(k * L + 2, k * L + L + 2).clamp(max=n)].to(torch.int64)[None]
        y = val.tokens[k * L + 1 : k * L + L + 1].to(torch.int64)[None]
        tally.add(torch.arange(k * L + 1, k * L + L + 1), score_tokens(model, val, x, y)[0])
    return tally.result()


def trains_then_scores(model, val, config, final):
    """Leaky: a step on each sequence before scoring it."""
    if not final:
        return None
    tally, L = Tally(val), val.seq_len
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for k in range(val.num_targets // L):
        seq = val.tokens[k * L : k * L + L + 1].to(torch.int64)[None]
        opt.zero_grad()
        score_tokens(model, val, seq[:, :-1], seq[:, 1:], grad=True).mean().backward()
        opt.step()
        tally.add(torch.arange(k * L + 1, k * L + L + 1), score_tokens(model, val, seq[:, :-1], seq[:, 1:])[0])
    return tally.result()


def trains_a_copy_ahead(model, val, config, final):
    """Leaky in its updates only: a copy of the model takes a step on the whole split before anything is
    scored (the scores, from the untouched model, stay causal: only the update instrument sees it)."""
    import copy

    if not final:
        return None
    ahead = copy.deepcopy(model)
    opt = torch.optim.SGD(ahead.parameters(), lr=0.05)
    seq = val.tokens.to(torch.int64)[None]
    score_tokens(ahead, val, seq[:, :-1], seq[:, 1:], grad=True).mean().backward()
    opt.step()
    return plain(model, val)


def adapts_in_periodic_evaluations(model, val, config, final):
    with torch.no_grad():
        model.tok_emb.weight.mul_(1.01)
    return plain(model, val)


def scores_the_first_sequence_twice(model, val, config, final):
    out = plain(model, val)
    L = val.seq_len
    Tally(val).add(torch.arange(1, L + 1), score_tokens(model, val, val.tokens[None, :L].long(),
                                                        val.tokens[None, 1 : L + 1].long())[0])
    return out


@pytest.mark.parametrize("leaky,why", [
    (reads_the_next_token, "a score read the future"),
    (trains_then_scores, "a score read the future"),
    (trains_a_copy_ahead, "trained on a token before scoring it"),
    (adapts_in_periodic_evaluations, "periodic evaluations must not adapt"),
    (scores_the_first_sequence_twice, "times"),
])
def test_the_causality_probe_fails_for_a_leaky_strategy(probe, leaky, why):
    config, model, val = probe
    verdict = causality_probe(leaky, model, val, config, cuts=[100, 300])
    assert not verdict.ok and why in verdict.violation, str(verdict)


def test_ttt_scores_each_chunk_before_any_step_on_it(probe):
    """ttt_sgd's update order itself: a chunk's first step comes after the scoring calls that committed
    every position of that chunk, and the split's last chunk is never trained on."""
    config, model, val = probe
    steps: list[int] = []
    scored: list[torch.Tensor] = []

    class Spy:
        def scored(self, positions, losses):
            scored.append(positions.clone())

    handle = register_optimizer_step_post_hook(lambda opt, a, k: steps.append(len(scored)))
    try:
        TTTSGD(**TTT_SGD).evaluate(model, dataclasses.replace(val, trace=Spy()), config, True)
    finally:
        handle.remove()
    chunk = TTT_SGD["chunk_tokens"]
    seen = torch.cat(scored)
    # each chunk's training (epochs steps) starts only once every position of that chunk is scored
    for ci in range(val.num_targets // chunk - 1):
        first_step = steps[ci * TTT_SGD["epochs"]]
        done = torch.cat(scored[:first_step])
        assert bool(((done >= ci * chunk + 1) & (done <= (ci + 1) * chunk)).sum() == chunk)
    assert len(steps) == (val.num_targets // chunk - 1) * TTT_SGD["epochs"]  # the last chunk: no step
    assert seen.numel() == val.num_targets


def test_ttt_strategies_adapt_only_on_the_final_score_and_restore_the_weights(probe):
    config, model, val = probe
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = [(TTTSGD(**TTT_SGD), TTTSGD(**{**TTT_SGD, "epochs": 0})),  # the same scoring, without the training
             (TTTLoRA(**TTT_LORA), TTTLoRA(**{**TTT_LORA, "lr": 1e-6, "prefix_docs": 0}))]
    for adapting, still in pairs:
        assert adapting.evaluate(model, val, config, False) is None
        loss, bpb = adapting.evaluate(model, val, config, True)
        assert math.isfinite(bpb) and loss != pytest.approx(still.evaluate(model, val, config, True)[0], rel=1e-4)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert all(p.requires_grad for p in model.parameters())


def test_ttt_lora_has_one_adapter_set_per_layer_run_and_the_forward_reads_each():
    """With depth recurrence the 4 tiny blocks run as 8 layers ((0, 1, 2, 1), (2, 1, 2, 3)): 8 adapter sets
    on Q, K, V, O and the MLP (the record: 17 on its 11 looped blocks), each read by its own layer run;
    the flat order runs 4."""
    from golfplan.core.hooks import apply_configure, build_model, resolve
    from golfplan.plugins.depth_recurrence import DepthRecurrence
    from golfplan.plugins.ttt_lora import Adapters

    hooks = resolve([DepthRecurrence()])
    config = apply_configure(hooks, tiny_config(vocab_size=64))
    torch.manual_seed(0)
    model = build_model(hooks, config)
    with torch.no_grad():  # no zero-initialised projection: every adapter reaches the loss
        for q in model.parameters():
            q.add_(0.1 * torch.randn_like(q))
    p = TTTLoRA(**TTT_LORA).p
    g = torch.Generator().manual_seed(0)
    model.stack.active = "flat"
    assert {n: lora.A.shape[0] for n, lora in Adapters(model, 2, p, g, torch.device("cpu")).loras.items()} == \
        {"q": 4, "k": 4, "v": 4, "o": 4, "mlp": 4, "head": 1}
    model.stack.active = "looped"
    ad = Adapters(model, 2, p, g, torch.device("cpu"))
    assert {n: tuple(lora.A.shape[:2]) for n, lora in ad.loras.items()} == \
        {"q": (8, 2), "k": (8, 2), "v": (8, 2), "o": (8, 2), "mlp": (8, 2), "head": (1, 2)}
    with torch.no_grad():
        for lora in ad.loras.values():
            lora.B.normal_()
    x = torch.randint(2, 64, (2, 16))
    model.token_losses(x, torch.roll(x, -1, 1), lora=ad).sum().backward()
    for name, lora in ad.loras.items():
        assert all(lora.A.grad[i].abs().sum() > 0 for i in range(lora.A.shape[0])), name
    assert not TTTLoRA(**TTT_LORA, k_lora=False, o_lora=False, mlp_lora=False).p.k_lora
    assert set(Adapters(model, 2, TTTLoRA(k_lora=False, o_lora=False, mlp_lora=False).p, g,
                        torch.device("cpu")).loras) == {"q", "v", "head"}


@pytest.mark.slow
def test_ttt_lora_compiled_scores_as_eager_and_warms_up_off_the_clock():
    """Where the run compiles, the adapted forward is compiled with dynamic shapes (here torch.compile's
    eager backend on the CPU): the same score as eager, its warm-up on random tokens apart from the clock."""
    config = tiny_config(vocab_size=64, compile="on", compile_backend="eager")
    model, val = probe_setup(config, tokens=512)
    with val.clock.measure(final=True):
        compiled = TTTLoRA(**TTT_LORA).evaluate(model, val, config, True)
    assert val.clock.warmup_s > 0
    assert compiled == pytest.approx(TTTLoRA(**TTT_LORA, compile=False).evaluate(model, val, config, True), rel=1e-6)


class WarmsUp(Technique):
    """Not a strategy: its final evaluation runs a 0.3 s 'compile warm-up', then leaves the score to others."""

    name = "warms_up"
    summary = "a 0.3 s warm-up in the final evaluation"

    @hookimpl
    def evaluate(self, model, val, config, final):
        if final:
            with val.clock.warmup():
                time.sleep(0.3)
        return None


def test_periodic_evaluation_never_adapts_and_the_final_one_is_timed_without_its_warmup(dataset):
    from golfplan.core.train.trainer import train

    lines: list[str] = []
    kw = dict(val_loss_every=4, iterations=12)
    plain_run = run_tiny(**kw)
    ttt_run = train(tiny_config(max_eval_seconds=1e-6, **kw), [TTTSGD(chunk_tokens=256, lr=0.01), WarmsUp()],
                    log=lines.append)
    assert plain_run.status == ttt_run.status == "complete", ttt_run.reason
    assert [h["val_loss"] for h in ttt_run.val_history] == [h["val_loss"] for h in plain_run.val_history]
    assert len(ttt_run.val_history) == 4  # steps 0, 4, 8 and the pre-export evaluation: no TTT in any
    assert ttt_run.last_train_loss == plain_run.last_train_loss
    assert ttt_run.val_bpb != plain_run.val_bpb  # the final score is the TTT's
    final = next(line for line in lines if line.startswith("final_int8_zlib_roundtrip "))
    assert int(final.split("compile_warmup:")[1].split("ms")[0]) >= 300 and "eval_time:" in final
    assert any("over the 1e-06s evaluation limit" in line for line in lines)
    from golfplan.core.profiles import PROFILES

    assert PROFILES["8xh100"]["max_eval_seconds"] == 600.0


# ---- case_ops -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["The NASA Launch", "iPhone and McDonald's ABC-def", "A b C", "x\ue001y \ue004\ue004",
                                  "déjà VU 日本 ÉCOLE", "", "  Two  spaces\n\tTab", "ALLCAPS123ABC"])
def test_case_ops_is_lossless_and_counts_the_original_bytes(text):
    enc = encode(text)
    assert decode(enc) == text
    assert not any(c.isupper() and c.isascii() for c in enc)
    pieces = [enc[i : i + 3] for i in range(0, len(enc), 3)]  # any split into pieces: escapes carry over
    assert sum(original_bytes(pieces)) == len(text.encode("utf-8"))


def test_case_ops_examples():
    assert encode("The NASA Launch") == "\ue001the \ue002nasa \ue001launch"
    assert encode("McDonald") == "\ue001mc\ue003donald"
    assert encode("iPhone") == "i\ue003phone"


@pytest.fixture(scope="module")
def caseops_dataset():
    return corpus.build(1024, transform=TRANSFORM, log=lambda m: None)


def test_case_ops_dataset_sidecar_sums_to_the_raw_texts_bytes(caseops_dataset):
    tokens = load_data_shard(caseops_dataset / "fineweb_val_000000.bin").to(torch.int64)
    sidecar = load_data_shard(caseops_dataset / "fineweb_val_bytes_000000.bin").to(torch.int64)
    assert sidecar.numel() == tokens.numel()
    sp = load_tokenizer(caseops_dataset / "tokenizer.model")
    bos = (tokens == sp.bos_id()).nonzero().flatten().tolist()
    assert bos[0] == 0 and int(sidecar[bos].sum()) == 0  # every document starts with a BOS, which adds nothing
    raw_total = 0
    for start, end in zip(bos, [*bos[1:], tokens.numel()]):  # each document's raw text, decoded back
        raw = decode(sp.decode(tokens[start + 1 : end].tolist()))
        assert int(sidecar[start + 1 : end].sum()) == len(raw.encode("utf-8"))
        raw_total += len(raw.encode("utf-8"))
    assert int(sidecar.sum()) == raw_total == corpus.meta(1024, "caseops")["val_text_bytes"]
    # the run's ValData counts the sidecar's original bytes; the SentencePiece tables would count the
    # operator pieces (3 UTF-8 bytes each)
    val_tokens = load_validation_tokens(caseops_dataset, 64)
    val = ValData(val_tokens, build_byte_tables(sp, 1024), 64, 4096, 1,
                  byte_counts=load_validation_bytes(caseops_dataset, val_tokens.numel()))
    assert val.bytes_source == "sidecar" and torch.equal(val.byte_counts.long(), sidecar[: val_tokens.numel()])
    assert int(val.byte_counts.sum()) < int(build_byte_tables(sp, 1024).per_token(val_tokens).sum())


def test_case_ops_points_a_run_at_the_transformed_dataset(caseops_dataset, tmp_path):
    out = CaseOps().configure(tiny_config())
    assert out == {"data_path": str(caseops_dataset), "tokenizer_path": str(caseops_dataset / "tokenizer.model")}
    from golfplan.core.errors import PluginError

    with pytest.raises(PluginError, match="no byte sidecar"):
        CaseOps().configure(tiny_config(data_path=str(tmp_path), tokenizer_path=str(tmp_path / "t.model")))


# ---- several processes -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("alone")  # torchrun's processes: one at a time under pytest-xdist
@pytest.mark.parametrize("plugin,sets", [("sliding_window", ["sliding_window.stride=16"]),
                                         ("ttt_sgd", ["ttt_sgd.chunk_tokens=512", "ttt_sgd.stride=16"])])
def test_two_processes_score_as_one(dataset, tmp_path, plugin, sets):
    """Ranks split the windows (and TTT's sequences, averaging their gradients): the score is one
    process's, to float tolerance."""
    import json
    import subprocess
    import sys

    from tests.core.test_distributed import TINY

    def run(name, extra):
        args = [*TINY, "--plugins", plugin, *[a for s in sets for a in ("--set", s)], *extra]
        p = subprocess.run([sys.executable, "-m", "golfplan", "run", *args, "--out", str(tmp_path), "--name", name],
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads((tmp_path / name / "result.json").read_text())

    one, two = run("one", []), run("two", ["--nproc", "2"])
    assert two["world_size"] == 2
    assert abs(one["val_bpb"] - two["val_bpb"]) < 2e-3, (one["val_bpb"], two["val_bpb"])
