"""The causality probe of ``golfplan check --legal``: does an evaluation strategy score every token
once, from the past only, and adapt (test-time training) only on tokens it has already scored?

    model, val = probe_setup(config, techniques)          # no dataset needed
    verdict = causality_probe(strategy, model, val, config)
    if not verdict:
        print(verdict.violation)                          # the first violation, in words

A strategy is a :class:`golfplan.core.technique.Technique` with an ``evaluate`` hookimpl, or a
callable ``(model, val, config, final) -> (loss, bpb) | None``; None (the default) probes
:func:`golfplan.core.evaluate.score.plain`, the default evaluation. Its scores are read from the
:class:`golfplan.core.evaluate.score.Tally` it adds them to; its updates from torch.optim's global
step hooks. The model is put back to its state before every run of the strategy. Checks, the
first violation ends the probe:

1. periodic: with ``final=False`` the strategy changes no weight and takes no optimizer step
   (declining with None is the usual answer of a strategy that adapts weights);
2. coverage: with ``final=True`` it scores positions 1 .. N through the tally, each exactly once,
   and returns the loss the tally gives;
3. scores: for each cut t, the validation tokens after t are changed (BOS tokens stay in place).
   Every score of a position <= t that the strategy committed no later than its first score of a
   position > t must be unchanged. For a strategy that scores in the split's order this is
   "changing tokens after t leaves every score up to t unchanged"; one that reorders documents
   (ttt_lora scores them by length) may adapt on a later document it has already scored before it
   scores an earlier one, so those later scores are not compared;
4. updates: every optimizer step the strategy took before it had scored any position after t must
   leave the same weights when the tokens after t change; otherwise it trained on a token before
   scoring it.

What it cannot see: a score that reads its own target (an off-by-one window) changes with that
token as a legal score does; changing later tokens does not reveal it.

The comparisons are exact by default (``tol``): the probe runs eager on the CPU, where an
unchanged computation gives the same bits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from golfplan.core.evaluate.score import ValData, plain
from golfplan.core.data.tokenizer import ByteTables

Strategy = Callable[[nn.Module, ValData, Any, bool], "tuple[float, float] | None"]


@dataclass
class Verdict:
    """What the probe found: ``ok``, the checks it ran, and the first violation (empty when ok)."""

    strategy: str
    ok: bool = True
    checked: list[str] = field(default_factory=list)
    violation: str = ""
    scores_compared: int = 0  # scores checked unchanged across the cuts (0: check 3 saw nothing)
    updates_compared: int = 0  # optimizer steps checked unchanged across the cuts

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        head = f"causality probe of {self.strategy}: "
        return head + ("ok (" + "; ".join(self.checked) + ")" if self.ok else f"FAILED: {self.violation}")


class Trace:
    """What one run of a strategy did: its scoring calls in order, and its optimizer steps."""

    def __init__(self) -> None:
        self.events: list[tuple[Tensor, Tensor]] = []  # (positions, losses) per Tally.add
        self.updates: list[tuple[int, str]] = []  # (scoring calls before the step, digest of its parameters)

    def scored(self, positions: Tensor, losses: Tensor) -> None:
        self.events.append((positions.detach().to("cpu", torch.int64), losses.detach().to("cpu", torch.float64)))

    def stepped(self, optimizer: torch.optim.Optimizer) -> None:
        h = hashlib.sha1()
        for group in optimizer.param_groups:
            for p in group["params"]:
                h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        self.updates.append((len(self.events), h.hexdigest()))

    def table(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per position 0 .. n: its score, the scoring call that committed it (-1: none), how often scored."""
        score = torch.full((n + 1,), float("nan"), dtype=torch.float64)
        event = torch.full((n + 1,), -1, dtype=torch.int64)
        count = torch.zeros(n + 1, dtype=torch.int64)
        for e, (pos, loss) in enumerate(self.events):
            inside = (pos >= 0) & (pos <= n)
            pos, loss = pos[inside], loss[inside]
            count.index_add_(0, pos, torch.ones_like(pos))
            score[pos], event[pos] = loss, e
        return score, event, count


def as_strategy(strategy: Any) -> tuple[str, Strategy]:
    """(name, callable) of a Technique with an ``evaluate`` hookimpl, a callable, or None (plain)."""
    if strategy is None:
        return "plain", plain
    method = getattr(strategy, "evaluate", None)
    if method is not None and getattr(strategy, "name", ""):
        names = list(inspect.signature(method).parameters)

        def call(model: nn.Module, val: ValData, config: Any, final: bool) -> Any:
            args = {"model": model, "val": val, "config": config, "final": final}
            return method(**{k: args[k] for k in names})

        return strategy.name, call
    return getattr(strategy, "__name__", repr(strategy)), strategy


def perturb_after(val: ValData, t: int, vocab_size: int, seed: int = 0) -> ValData:
    """``val`` with every token after position ``t`` replaced by another (BOS tokens stay, none is made)."""
    tokens = val.tokens.to(torch.int64)
    g = torch.Generator().manual_seed(seed)
    other = (tokens + torch.randint(1, vocab_size, tokens.shape, generator=g)) % vocab_size
    other = torch.where(other == val.bos_id, (other + 1) % vocab_size, other)
    change = (torch.arange(tokens.numel()) > t) & (tokens != val.bos_id)
    return dataclasses.replace(val, tokens=torch.where(change, other, tokens).to(val.tokens.dtype), trace=None)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(fn: Strategy, model: nn.Module, val: ValData, config: Any, final: bool,
         state: dict[str, Tensor]) -> tuple[Any, Trace]:
    model.load_state_dict(state)
    trace = Trace()
    hook = register_optimizer_step_post_hook(lambda opt, args, kwargs: trace.stepped(opt))
    try:
        out = fn(model, dataclasses.replace(val, trace=trace), config, final)
    finally:
        hook.remove()
    return out, trace


def causality_probe(strategy: Any, model: nn.Module, val: ValData, config: Any,
                    cuts: Sequence[int] | None = None, tol: float = 0.0, seed: int = 0) -> Verdict:
    """Probe ``strategy`` on ``model`` and ``val`` (single process); see the module docstring.

    ``cuts``: the positions t after which tokens are changed (default: five, spread over the split).
    ``tol``: how far a score may move and still count as unchanged (0: exact)."""
    name, fn = as_strategy(strategy)
    verdict = Verdict(name)
    n = val.num_targets
    state = _state(model)

    def fail(why: str) -> Verdict:
        verdict.ok, verdict.violation = False, why
        model.load_state_dict(state)
        return verdict

    out, trace = _run(fn, model, val, config, False, state)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
    if changed or trace.updates:
        return fail(f"with final=False (a periodic evaluation) it changed the weights "
                    f"({', '.join(changed[:3]) or '-'}; "
                    f"{len(trace.updates)} optimizer step(s)): periodic evaluations must not adapt")
    verdict.checked.append("periodic: no weight changed" + (" (declined)" if out is None else ""))

    out, ref = _run(fn, model, val, config, True, state)
    if out is None:
        verdict.checked.append("final: declined, so the default evaluation (plain) was probed")
        fn, verdict.strategy = plain, f"{name} (declined: plain)"
        out, ref = _run(fn, model, val, config, True, state)
    score, event, count = ref.table(n)
    if not ref.events:
        return fail("it scored no token through a Tally (score_tokens / Tally.add): nothing to probe")
    every = torch.cat([pos for pos, _ in ref.events])
    stray = every[(every < 1) | (every > n)]
    if stray.numel():
        return fail(f"it scored position {int(stray[0])}, outside 1..{n}")
    twice, never = (count[1:] > 1).nonzero().flatten(), (count[1:] == 0).nonzero().flatten()
    if twice.numel():
        return fail(f"it scored position {int(twice[0]) + 1} {int(count[int(twice[0]) + 1])} times")
    if never.numel():
        return fail(f"it never scored position {int(never[0]) + 1} ({never.numel()} of {n} unscored)")
    mean = float(score[1:].mean())
    if abs(float(out[0]) - mean) > 1e-6 * max(1.0, abs(mean)):
        return fail(f"it returned val_loss {float(out[0]):.6f} but its tally's scores average {mean:.6f}")
    verdict.checked.append(f"coverage: {n} positions scored once in {len(ref.events)} call(s)")

    compared_scores = compared_updates = 0
    for t in (cuts if cuts is not None else [n * k // 6 for k in range(1, 6)]):
        t = int(t)
        later = [e for e, (pos, _) in enumerate(ref.events) if bool((pos > t).any())]
        first_later = later[0] if later else len(ref.events)
        _, alt = _run(fn, model, perturb_after(val, t, config.vocab_size, seed + t), config, True, state)
        alt_score, alt_event, _ = alt.table(n)
        pos = torch.arange(n + 1)
        check = (pos >= 1) & (pos <= t) & (event >= 0) & (event <= first_later)
        diff = (alt_score - score).abs()
        bad = (check & ~(diff <= tol * torch.maximum(score.abs(), torch.ones_like(score)) + tol)).nonzero().flatten()
        if bad.numel():
            q = int(bad[0])
            return fail(f"changing the tokens after position {t} changed the score of position {q} "
                        f"({float(score[q]):.6f} -> {float(alt_score[q]):.6f}), which it committed before "
                        f"scoring any position after {t}: a score read the future")
        compared_scores += int(check.sum())
        early_ref = [u for u in ref.updates if u[0] <= first_later]
        early_alt = [u for u in alt.updates if u[0] <= first_later]
        for k, (a, b) in enumerate(zip(early_ref, early_alt)):
            if a != b:
                return fail(f"its optimizer step {k + 1} (after {a[0]} scoring call(s), before it had scored any "
                            f"position after {t}) changed when the tokens after {t} changed: it trained on a token "
                            f"before scoring it")
        if len(early_ref) != len(early_alt):
            return fail(f"it took {len(early_ref)} vs {len(early_alt)} optimizer steps before scoring past {t} "
                        f"when the tokens after {t} changed: its updates depend on unscored tokens")
        compared_updates += len(early_ref)
    verdict.scores_compared, verdict.updates_compared = compared_scores, compared_updates
    verdict.checked.append(f"scores: {compared_scores} committed before any later position, unchanged")
    verdict.checked.append(f"updates: {compared_updates} taken before scoring past the cut, unchanged")
    model.load_state_dict(state)
    return verdict


def probe_setup(config: Any, techniques: Sequence[Any] = (), tokens: int = 0, seed: int = 0,
                doc_lengths: tuple[int, int] = (24, 160)) -> tuple[nn.Module, ValData]:
    """A model and validation data for the probe, no dataset needed: ``config``'s model built through
    the techniques' hooks with every weight drawn at random (a zero-initialised projection would make a
    block a no-op and hide a leak through it), and random tokens in documents of random length
    (``doc_lengths``), each starting with BOS, one byte per token (a BOS: none). ``tokens``: the
    number of targets, rounded down to whole sequences (default four sequences)."""
    from golfplan.core.hooks import build_model, compose

    torch.manual_seed(seed)
    model = build_model(compose(list(techniques), config, configure=False).hooks, config)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p.size(-1) ** -0.5)
            else:
                p.add_(0.1 * torch.randn_like(p))
    L = config.train_seq_len
    n = max((tokens or 4 * L) // L, 1) * L
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, config.vocab_size, (n + 1,), generator=g)
    at = 0
    while at <= n:
        ids[at] = config.bos_id
        at += int(torch.randint(doc_lengths[0], doc_lengths[1] + 1, (1,), generator=g))
    vocab = config.vocab_size
    base = torch.ones(vocab, dtype=torch.int16)
    base[config.bos_id] = 0
    tables = ByteTables(base, torch.zeros(vocab, dtype=torch.bool), torch.zeros(vocab, dtype=torch.bool))
    val = ValData(ids.to(torch.int64), tables, L, 4 * L, 1, bos_id=config.bos_id)
    return model, val
