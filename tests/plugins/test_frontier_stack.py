"""The frontier record's stack and embedding techniques: skip_gates, depth_recurrence, parallel_lanes,
smear_gate, bigram_hash, doc_packing, and the record's combination of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter

from golfplan.check import trace_techniques
from golfplan.core.config import shrink
from golfplan.core.model.attention import DocAttention, cu_seqlens, document_mask, piece_ids
from golfplan.core.data.shards import DistributedTokenLoader, document_segments, write_shard
from golfplan.core.errors import PluginError
from golfplan.core.hooks import apply_configure, build_model, resolve
from golfplan.core.model.gpt import GPT
from golfplan.core.train.optim import build_optimizers
from golfplan.core.state import Clock, ForwardContext
from golfplan.core.train.step import Step, prime
from golfplan.core.technique import Technique, hookimpl
from golfplan.core.train.trainer import train
from golfplan.plugins.attention_recycling import AttentionRecycling
from golfplan.plugins.bigram_hash import BigramHash, BigramHashTechnique, bigram_buckets
from golfplan.plugins.depth_recurrence import DepthRecurrence
from golfplan.plugins.doc_packing import DocPacking, DocumentPackingLoader
from golfplan.plugins.parallel import Parallel
from golfplan.plugins.parallel_lanes import LaneStack, ParallelLanes
from golfplan.plugins.skip_gates import GatedSkip, SkipGates
from golfplan.plugins.smear_gate import SmearGate, SmearGateTechnique
from golfplan.plugins.sparse_attn_gate import SparseAttnGate
from golfplan.registry import Registry, combination_problems
from tests.conftest import tiny_config

BOS = 1


def built(*techniques: Technique, **overrides) -> GPT:
    hooks = resolve(list(techniques))
    config = apply_configure(hooks, tiny_config(**overrides))
    torch.manual_seed(0)
    return build_model(hooks, config)


def roles(model: GPT, *techniques: Technique) -> dict[int, str]:
    """id(param) -> the role of the optimizer it landed in."""
    optimizers, _ = build_optimizers(model, model.config, resolve(list(techniques)))
    return {id(p): g["role"] for opt in optimizers for g in opt.param_groups for p in g["params"]}


def perturb(model: GPT, std: float = 0.05) -> None:
    """Trained-looking weights: every parameter (zero-initialised gates and projections included) moves."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)


def block_calls(model: GPT) -> list[int]:
    """Records the index of every block run: each run (a block's forward or a lane step) calls its
    ``attn_out`` once."""
    calls: list[int] = []
    for i, block in enumerate(model.blocks):
        block.attn_out = lambda x, ctx, f=block.attn_out, i=i: (calls.append(i), f(x, ctx))[1]
    return calls


def logits(model: GPT, ids: torch.Tensor, segments: torch.Tensor | None) -> torch.Tensor:
    ctx = ForwardContext(model, model.progress, ids, ids, False, segments)
    with torch.no_grad():
        return model.logits(model.hidden(ids, ctx)).view(*ids.shape, -1)


def two_documents(prev_doc: list[int], next_doc: list[int]) -> torch.Tensor:
    return torch.tensor([[BOS, *prev_doc, BOS, *next_doc]])


# ---- skip_gates ------------------------------------------------------------------------------


def test_skip_gate_is_the_records_lerp_and_halves_stream_plus_skip_at_init():
    torch.manual_seed(0)
    merge = GatedSkip(num_skips=3, dim=8)
    x, skip, w = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(8)
    out = merge(x, skip, w, 1)
    assert torch.equal(out, torch.lerp(w * skip, x, torch.full((8,), 0.5)))  # sigmoid(0) = 1/2
    assert torch.allclose(out, 0.5 * (w * skip + x), atol=1e-6)
    with torch.no_grad():
        merge.skip_gates.copy_(torch.randn(3 * 8))
    g = torch.sigmoid(merge.skip_gates.view(3, 8)[2])
    assert torch.allclose(merge(x, skip, w, 2), w * skip + g * (x - w * skip), atol=1e-6)


def test_skip_gates_join_the_model_one_gate_per_skip_trained_as_scalars():
    technique = SkipGates()
    model = built(technique)
    assert isinstance(model.stack.merge, GatedSkip)
    assert model.stack.merge.skip_gates.numel() == model.num_skip_weights * model.config.model_dim
    assert roles(model, technique)[id(model.stack.merge.skip_gates)] == "scalar"
    ids = torch.randint(0, 1024, (1, 16))
    perturb(model)

    def loss_with_skip_weights(scale: float) -> torch.Tensor:
        with torch.no_grad():
            weights = model.skip_weights.detach().clone()
            model.skip_weights.mul_(scale)
            out = model(ids, ids)
            model.skip_weights.copy_(weights)
        return out

    assert not torch.allclose(loss_with_skip_weights(1.0), loss_with_skip_weights(3.0))  # the skips count
    with torch.no_grad():
        model.stack.merge.skip_gates.fill_(40.0)  # sigmoid = 1: lerp returns the stream, the skip drops out
    assert torch.allclose(loss_with_skip_weights(1.0), loss_with_skip_weights(3.0), atol=1e-6)


# ---- depth_recurrence --------------------------------------------------------------------------


def test_depth_recurrence_builds_the_records_orders_at_11_layers_and_scales_with_depth():
    config = tiny_config(num_layers=11)
    orders = DepthRecurrence().layer_orders(config)
    assert orders["flat"] == ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9, 10))
    assert orders["looped"] == ((0, 1, 2, 3, 4, 5, 3, 4), (5, 3, 4, 5, 6, 7, 8, 9, 10))
    assert DepthRecurrence().bounds(4) == (1, 2)
    small = DepthRecurrence().layer_orders(tiny_config())
    assert small["looped"] == ((0, 1, 2, 1), (2, 1, 2, 3))
    assert list(DepthRecurrence(enable_at=0.0).layer_orders(config)) == ["looped"]
    pure_decoder = DepthRecurrence().layer_orders(config.replace(encoder_layers=0))  # unet's split is kept
    assert pure_decoder["looped"] == ((), (0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10))


def test_recurrence_adds_only_the_records_extra_skip_weights_and_runs_17_virtual_layers():
    base, looped = built(num_layers=11), built(DepthRecurrence(), num_layers=11)
    d = base.config.model_dim
    shapes = lambda m: {n: tuple(p.shape) for n, p in m.named_parameters()}
    a, b = shapes(base), shapes(looped)
    assert set(a) == set(b)
    assert {n for n in a if a[n] != b[n]} == {"skip_weights"}
    assert a["skip_weights"] == (5, d) and b["skip_weights"] == (8, d)  # 3 more rows, as the record's 8
    assert sum(p.numel() for p in looped.parameters()) - sum(p.numel() for p in base.parameters()) == 3 * d
    calls = block_calls(looped)
    ids = torch.randint(0, 1024, (1, 16))
    looped(ids, ids)
    assert len(calls) == 11
    calls.clear()
    looped.stack.active = "looped"
    looped(ids, ids)
    assert calls == [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10] and len(calls) == 17


def test_recurrence_switches_at_enable_at_on_the_host():
    technique, model = DepthRecurrence(enable_at=0.35), built()
    for step, expected in ((0, "flat"), (34, "flat"), (35, "looped"), (99, "looped")):
        technique.on_step(model=model, optimizers=[], clock=Clock(step=step, iterations=100))
        assert model.stack.active == expected, step
    technique.on_step(model=model, optimizers=[], clock=Clock(step=1, iterations=1000))
    assert model.stack.active == "flat"
    wallclock = Clock(step=1, iterations=1000, elapsed_s=36.0, wallclock_s=100.0)  # progress from the clock's time
    technique.on_step(model=model, optimizers=[], clock=wallclock)
    assert model.stack.active == "looped"


def test_the_switch_runs_a_graph_primed_before_it_without_recompiling():
    technique = DepthRecurrence(enable_at=0.35)
    hooks = resolve([technique])
    config = tiny_config(num_layers=2)  # block 1 loops: flat [0 | 1], looped [0, 1 | 1, 1]; cheaper to trace
    torch.manual_seed(0)
    model = build_model(hooks, config).train()
    optimizers, muon = build_optimizers(model, config, hooks)
    x, y = torch.randint(0, 1024, (2, 64)), torch.randint(0, 1024, (2, 64))
    with torch.no_grad():
        model(x, y)  # RoPE tables, as the check's trace does
    counter = CompileCounter()
    dynamo.reset()
    try:
        compiled = torch.compile(model, fullgraph=True, backend=counter, dynamic=False)
        step = Step(compiled, model, optimizers, muon, hooks, config, lambda: (x, y), grad_accum=1)
        prime(step, 1)
        assert counter.frame_count == 2 and model.stack.active == "flat"  # one graph per order
        with dynamo.config.patch(error_on_recompile=True):
            for s in (5, 10, 11, 20):
                step(Clock(step=s, iterations=30))
            assert model.stack.active == "looped"
            loss = compiled(x, y)
        assert counter.frame_count == 2
        assert torch.equal(loss, model(x, y))  # the compiled call really ran the looped order
        model.stack.active = "flat"
        assert not torch.equal(loss, model(x, y))
    finally:
        dynamo.reset()


# ---- parallel_lanes ----------------------------------------------------------------------------


def test_lanes_update_by_the_formula_and_the_output_is_their_mean():
    technique = ParallelLanes(start=0.5)  # block 2 of 4: the whole decoder [2, 3] runs as lanes
    model = built(technique).eval()
    stack = model.stack
    assert isinstance(stack, LaneStack) and stack.start == 2
    assert torch.equal(stack.lane_resid, torch.full((4 * 2,), 1.1)) and torch.equal(stack.lane_post, torch.ones(4 * 4))
    perturb(model)
    torch.manual_seed(5)
    with torch.no_grad():
        stack.lane_resid.copy_(1 + 0.3 * torch.randn_like(stack.lane_resid))
        stack.lane_post.copy_(1 + 0.3 * torch.randn_like(stack.lane_post))
    ids = torch.randint(0, 1024, (2, 16))
    ctx = ForwardContext(model, model.progress, ids, ids, False)
    x0 = torch.randn(2, 16, model.config.model_dim)
    with torch.no_grad():
        out = stack(model, x0, x0, ctx)
        b = model.blocks
        s0 = b[0](x0, x0, ctx)
        s1 = b[1](s0, x0, ctx)
        lane0, lane1 = s1, s1
        for j, i, skip in ((0, 2, s1), (1, 3, s0)):
            lane0 = lane0 + model.skip_weights[j] * skip
            a, m = b[i].attn_out(b[i].mix(lane0, x0), ctx), b[i].mlp_out(lane1, ctx)
            r, p = stack.lane_resid.view(-1, 2)[i], stack.lane_post.view(-1, 2, 2)[i]
            lane0, lane1 = (r[0] * lane0 + p[0, 0] * a + p[1, 0] * m,
                            r[1] * lane1 + p[0, 1] * a + p[1, 1] * m)
        assert torch.allclose(out, 0.5 * (lane0 + lane1), atol=1e-5)
        assert not torch.allclose(out, lane0, atol=1e-3) and not torch.allclose(out, lane1, atol=1e-3)
    r = roles(model, technique)
    assert r[id(stack.lane_resid)] == "scalar" and r[id(stack.lane_post)] == "scalar"


def test_lanes_combine_with_recurrence_and_skip_gates():
    model = built(DepthRecurrence(), ParallelLanes(), SkipGates(), num_layers=11)
    assert isinstance(model.stack, LaneStack) and isinstance(model.stack.merge, GatedSkip)
    assert model.stack.start == 8
    model.stack.active = "looped"
    perturb(model)  # the branches are zero at init (zero-init output projections)
    calls = block_calls(model)
    ids = torch.randint(0, 1024, (1, 16))
    loss = model(ids, ids)
    assert calls == [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]
    loss.backward()
    grad = model.stack.lane_post.grad.view(-1, 2, 2)
    assert grad[8:].abs().sum() > 0 and grad[:8].abs().sum() == 0  # lanes from block 8 on


def test_lanes_refuse_block_wirings_they_would_bypass():
    assert combination_problems([ParallelLanes, Parallel])
    assert combination_problems([ParallelLanes, AttentionRecycling])
    assert not combination_problems([ParallelLanes, DepthRecurrence, SkipGates])
    with pytest.raises(PluginError, match="own forward"):
        built(ParallelLanes(), AttentionRecycling())


# ---- smear_gate, bigram_hash, doc_packing: nothing crosses a document boundary -------------------

PREV, PREV_CHANGED, NEXT = [11, 12, 13, 14, 15], [91, 92, 93, 94, 95], [21, 22, 23, 24, 25, 26]
START = 1 + len(PREV)  # the position of the second document's BOS


def embedding_ctx(ids: torch.Tensor, segments: torch.Tensor | None = None) -> ForwardContext:
    return ForwardContext(None, None, ids, ids, False, segments)


def trained_smear(dim: int = 16, bos_id: int = BOS) -> SmearGate:
    torch.manual_seed(4)
    smear = SmearGate(dim, 12, bos_id)
    with torch.no_grad():
        smear.smear_gate.weight.normal_(0.0, 1.0)
        smear.smear_lambda.fill_(0.8)
    return smear


@pytest.mark.parametrize("use_segments", [False, True], ids=["bos_id", "segments"])
def test_smear_gate_never_crosses_a_document_start_but_smears_within_one(use_segments):
    torch.manual_seed(6)
    table = torch.randn(128, 16)
    smear = trained_smear()

    def out(ids: torch.Tensor) -> torch.Tensor:
        segments = document_segments(ids, BOS) if use_segments else None
        with torch.no_grad():
            return smear(table[ids], embedding_ctx(ids, segments))

    a, b = out(two_documents(PREV, NEXT)), out(two_documents(PREV_CHANGED, NEXT))
    assert torch.equal(a[:, START:], b[:, START:])  # the next document does not move at all
    assert not torch.equal(a[:, 2:START], b[:, 2:START])
    within = out(two_documents(PREV, [21, 77, 23, 24, 25, 26]))  # token START+2 changes: START+3 is smeared from it
    assert not torch.equal(a[:, START + 3], within[:, START + 3])
    assert torch.equal(a[:, START + 4:], within[:, START + 4:])
    ids = two_documents(PREV, NEXT)
    plain = table[ids]
    assert torch.equal(SmearGate(16, 12, BOS)(plain, embedding_ctx(ids)), plain)  # W = 0, λ = 0: identity at init


def test_smear_gate_without_the_bos_fix_would_leak():
    """The control of the leak test: a smear that does not know where documents start moves the next one."""
    torch.manual_seed(6)
    table = torch.randn(128, 16)
    unfixed = trained_smear(bos_id=-1)
    a, b = (unfixed(table[ids], embedding_ctx(ids))
            for ids in (two_documents(PREV, NEXT), two_documents(PREV_CHANGED, NEXT)))
    assert not torch.equal(a[:, START], b[:, START])


def test_bigram_buckets_follow_the_hash_with_a_reserved_bucket_at_document_starts():
    ids = torch.tensor([[5, 7, BOS, 9]])
    starts = torch.tensor([[True, False, True, False]])
    # (36313·7 xor 27191·5) mod 10239 = 5128, (36313·9 xor 27191·1) mod 10239 = 3763
    assert bigram_buckets(ids, starts, 10240).tolist() == [[10239, 5128, 10239, 3763]]
    assert bigram_buckets(ids, starts, 16).tolist() == [[15, 1, 15, 4]]


@pytest.mark.parametrize("use_segments", [False, True], ids=["bos_id", "segments"])
def test_bigram_hash_is_the_identity_at_init_and_never_crosses_a_document_start(use_segments):
    torch.manual_seed(7)
    bigram = BigramHash(buckets=64, dim=8, model_dim=16, scale=0.05, num_layers=4, bos_id=BOS)
    ids = two_documents(PREV, NEXT)
    x = torch.randn(1, ids.size(1), 16, requires_grad=True)
    out = bigram(x, embedding_ctx(ids))
    assert torch.equal(out, x)  # zero table: adds nothing at init
    out.square().sum().backward()
    assert bigram.bigram_embed.weight.grad.abs().sum() > 0  # ... yet it learns (the projection is not zero)
    with torch.no_grad():
        bigram.bigram_embed.weight.normal_(0.0, 1.0)

    def added(ids: torch.Tensor) -> torch.Tensor:
        segments = document_segments(ids, BOS) if use_segments else None
        with torch.no_grad():
            return bigram(torch.zeros(1, ids.size(1), 16), embedding_ctx(ids, segments))

    a, b = added(two_documents(PREV, NEXT)), added(two_documents(PREV_CHANGED, NEXT))
    assert torch.equal(a[:, START:], b[:, START:]) and not torch.equal(a[:, 1:START], b[:, 1:START])


def test_bigram_hash_trains_its_table_with_the_embedding_and_its_projection_with_muon():
    technique = BigramHashTechnique(buckets=2048, dim=32)
    model = built(technique)
    bigram = model.embeds[0]
    r = roles(model, technique)
    assert r[id(bigram.bigram_embed.weight)] == "embed" and r[id(bigram.bigram_proj.weight)] == "matrix"
    assert r[id(bigram.bigram_scale)] == "scalar"


def test_document_segments_of_a_hand_made_stream():
    x = torch.tensor([[5, BOS, 7, 8, BOS, 9], [3, 4, BOS, BOS, 6, 2]])
    assert document_segments(x, BOS).tolist() == [[0, 1, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2]]


def stream_of_documents(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Documents of these lengths (each a BOS and length - 1 tokens), one after another."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.cat([torch.tensor([BOS]), torch.randint(2, 50, (n - 1,), generator=gen)]) for n in lengths])


@pytest.mark.parametrize("world_size", [1, 2])
def test_packing_loader_reads_the_baselines_tokens_as_one_row_with_their_documents(tmp_path, world_size):
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 50, size=4000)
    tokens[rng.choice(4000, size=60, replace=False)] = BOS
    write_shard(tmp_path / "fineweb_train_000000.bin", tokens)
    cpu = torch.device("cpu")
    for rank in range(world_size):
        base = DistributedTokenLoader(tmp_path, rank, world_size, cpu)
        packed = DocumentPackingLoader(tmp_path, rank, world_size, cpu, BOS, 32)
        for _ in range(3):
            x0, y0 = base.next_batch(256, 32, 2)
            x, y, extras = packed.next_batch(256, 32, 2)
            assert x.shape == (1, 256 // (2 * world_size)) and torch.equal(x, x0.reshape(1, -1))
            assert torch.equal(y, y0.reshape(1, -1))
            assert torch.equal(extras["segments"], document_segments(x, BOS)) and "cu_seqlens" not in extras  # cpu
            assert torch.equal(packed.batch_extras(x)["segments"], extras["segments"])


@pytest.mark.parametrize("max_len", [2048, 32, 7])
def test_varlen_pieces_never_cut_a_document_before_its_first_max_len_tokens(max_len):
    """Pieces come from each document's start: its first ``max_len`` tokens are one piece wherever the
    document falls in the packed row (the old rows cut documents at fixed row boundaries); a longer
    document goes on in pieces of ``max_len``; no piece crosses a BOS; the host's cu_seqlens (flash
    varlen) have the same boundaries."""
    lengths = [5, 3000, 40, 2100, 33, 1, 64, 700, 2048, 2049, 90]
    x = stream_of_documents(lengths)[None]
    pieces = piece_ids(document_segments(x, BOS), max_len)[0]
    assert x.size(1) > max_len or max_len == 2048
    start = 0
    for n in lengths:
        doc = pieces[start : start + n]
        for k in range(0, n, max_len):
            part = doc[k : k + max_len]
            assert (part == part[0]).all(), f"a document of {n} cut inside its tokens {k}..{k + max_len}"
            assert k == 0 and start == 0 or part[0] != pieces[start + k - 1]  # a new piece starts here
        start += n
    bounds = [0, *(torch.nonzero(pieces[1:] != pieces[:-1]).flatten() + 1).tolist(), x.size(1)]
    cu = cu_seqlens(x, BOS, max_len)
    assert cu.dtype == torch.int32 and cu.numel() % 64 == 0
    assert cu[: len(bounds)].tolist() == bounds and (cu[len(bounds):] == x.size(1)).all()
    rows = x[:, :8200].reshape(4, -1)  # several rows: each row start is a boundary too
    row_pieces = piece_ids(document_segments(rows, BOS), max_len)
    flat = (row_pieces + torch.arange(4)[:, None] * 10**6).reshape(-1)
    flat_bounds = [0, *(torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1).tolist(), rows.numel()]
    assert cu_seqlens(rows, BOS, max_len)[: len(flat_bounds)].tolist() == flat_bounds


def test_blocked_sdpa_of_a_long_row_is_the_full_piece_mask():
    """A row longer than ``max_len`` attends in blocks (O(seq x max_len)): the same outputs as one
    (seq x seq) piece mask."""
    x = stream_of_documents([5, 70, 3, 33, 100, 9, 31])[None]  # 251 tokens, pieces of at most 32
    pieces = piece_ids(document_segments(x, BOS), 32)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, x.size(1), 8, generator=gen)
    k, v = torch.randn(2, 1, 2, x.size(1), 8, generator=gen)
    blocked = DocAttention(document_segments(x, BOS), None, 32)(q, k, v)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=document_mask(pieces), enable_gqa=True)
    assert torch.allclose(blocked, full, atol=1e-6)


def test_the_pieces_and_their_mask_are_built_once_per_batch_not_per_layer(monkeypatch):
    import golfplan.core.model.attention as attention

    calls = {"piece_ids": 0, "document_mask": 0}
    for name in calls:
        def counted(*a, f=getattr(attention, name), name=name):
            calls[name] += 1
            return f(*a)

        monkeypatch.setattr(attention, name, counted)
    model = built(DocPacking())
    for lengths in ([20, 150, 9, 64, 65, 40], [10, 30]):  # a packed row (blocked), then a short one
        x = stream_of_documents(lengths)[None]
        model(x, torch.roll(x, -1, 1), segments=document_segments(x, BOS)).backward()
    assert len(model.blocks) == 4 and calls == {"piece_ids": 2, "document_mask": 1}


def test_a_packed_row_scores_each_piece_as_if_alone():
    """Through the whole model: the logits of a packed row of documents (longer than the 64-token
    pieces: the blocked path) equal those of each piece run alone, from its own position 0."""
    lengths = [20, 150, 9, 64, 65, 40]  # pieces of at most 64: 150 = 64 + 64 + 22, 65 = 64 + 1
    model = built(DocPacking(), SparseAttnGate()).eval()
    perturb(model)
    x = stream_of_documents(lengths)[None]
    packed = logits(model, x, document_segments(x, BOS))
    start = 0
    for n in lengths:
        for k in range(0, n, 64):
            a, b = start + k, start + min(k + 64, n)
            assert torch.allclose(packed[:, a:b], logits(model, x[:, a:b], None), atol=1e-4), (n, k)
        start += n


@pytest.mark.parametrize("embeds", [[], [SmearGateTechnique], [BigramHashTechnique],
                                    [SmearGateTechnique, BigramHashTechnique]],
                         ids=["attention", "smear_gate", "bigram_hash", "both"])
def test_packed_documents_do_not_leak_through_the_model(embeds):
    model = built(DocPacking(), *(cls() for cls in embeds)).eval()
    perturb(model)
    for module in model.embeds:
        if isinstance(module, SmearGate):
            module.smear_lambda.data.fill_(0.8)
    a, b = two_documents(PREV, NEXT), two_documents(PREV_CHANGED, NEXT)
    seg = document_segments(a, BOS)
    la, lb = logits(model, a, seg), logits(model, b, seg)
    assert torch.equal(la[:, START:], lb[:, START:])  # from its BOS on, the next document does not move at all
    assert not torch.equal(la[:, 2:START], lb[:, 2:START])
    assert not torch.equal(logits(model, a, None)[:, START:], logits(model, b, None)[:, START:])  # unmasked: it leaks


# ---- the record's combination -------------------------------------------------------------------


class StackRecorder(Technique):
    """Test-only: records which layer order each training step ran."""

    name = "stack_recorder"
    summary = "test helper"
    seed_refs = ("test",)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, str]] = []

    @hookimpl
    def on_step(self, model, optimizers, clock):
        self.seen.append((clock.progress, model.stack.active))


@pytest.mark.slow  # 35-80 s on the shared 2-core machine, most of it the fullgraph trace
def test_the_records_stack_builds_traces_and_trains(dataset):
    names = ["depth_recurrence", "parallel_lanes", "skip_gates", "smear_gate", "doc_packing"]
    techniques = Registry().instantiate({n: {} for n in names})
    assert not combination_problems([type(t) for t in techniques])
    config = shrink(apply_configure(resolve(techniques), tiny_config()), steps=12)
    trace_techniques(config, techniques)  # fullgraph, primed orders, no recompile across the switch
    recorder = StackRecorder()
    result = train(config, [*techniques, recorder], log=lambda m: None, configure=False)
    assert result.status == "complete", result.reason
    assert result.last_train_loss < result.first_train_loss
    # the recorder's on_step runs before depth_recurrence's: it sees the order the step ran with
    ran = [active for _, active in recorder.seen]
    assert ran[0] == "flat" and ran[-1] == "looped"
    assert all(a == "looped" for (p, a) in recorder.seen if p > 0.35 + 1 / 12)
