"""The preflight as a study runs it: where each configuration is checked, what is remembered, and
the screening of the search space before the study starts.

Plugin code runs in the check, so the check of a configuration is protected as a trial is:

* with the default runner, the first run of a configuration not checked yet runs the preflight in
  its own ``golfplan run`` process (``--check-json``): the same process group, hard time limit,
  death with the planner and crash/OOM classification as the run, at no extra process start;
* with a custom runner, ``python -m golfplan check --spec spec.json --json`` runs as a protected
  child (:mod:`golfplan.planner.procs`) before the runs;
* ``checks: static`` (and the screening below) runs the static stage in the planner's process (it
  trains nothing) on a watchdog thread: an exception a plugin raises is a refusal, and so is a
  plugin whose constructor or ``configure`` has not returned after ``STATIC_LIMIT_S`` (the thread
  is left behind as a daemon; the study goes on without it).

A check that fails, crashes, hangs or runs out of memory refuses that configuration with the
reason (the failure kind and the last error line); the study goes on. A passed check is stored in
the study (``golfplan.check:KEY``), so each configuration is checked once; a refusal is stored too
(``golfplan.refused:KEY``), and when it does not depend on param values (a plugin that does not
trace, a slot or conflict clash) as a *forbidden subset* the sampler never proposes again.

Screening, before a tune study starts: each searched plugin is checked statically alone (one the
check refuses is left out of the search, unless ``checks: none``), and each small int or choice
param keeps only the values the static check accepts (whatever ``checks`` says: it trains nothing).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from golfplan.planner import procs
from golfplan.planner.definition import Plugins
from golfplan.planner.records import CheckRecord, Refusal
from golfplan.planner.runner import read_json, spec_json
from golfplan.planner.storage import CHECKED_PREFIX, REFUSED_PREFIX


def crashed_report(stage: str, e: BaseException) -> Any:
    """A CheckReport saying the check itself raised (plugin code that is not a check failure)."""
    from golfplan.check import CheckReport, CheckResult

    first = (str(e).strip().splitlines() or [""])[0][:300]
    return CheckReport([CheckResult(stage, "fail", 0.0, f"plugin code raised {type(e).__name__}"
                                    + (f": {first}" if first else ""))])


STATIC_LIMIT_S = 60.0  # the static stage takes well under a second; a plugin stuck in it is refused


def static_check(spec: Any, registry: Any, world_size: int | None = None) -> Any:
    """The static stage in this process, on a watchdog thread: any exception of plugin code, or
    plugin code that does not return within ``STATIC_LIMIT_S``, is a failed check."""
    from golfplan.check import CheckReport, CheckResult, run_checks

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["report"] = run_checks(spec, registry, world_size=world_size, only_static=True)
        except Exception as e:  # noqa: BLE001 - a plugin's bug refuses its configuration, never the study
            box["error"] = e

    limit = STATIC_LIMIT_S
    thread = threading.Thread(target=work, name="golfplan-static-check", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        return CheckReport([CheckResult("static", "fail", limit, f"plugin code did not return within {limit:g}s "
                                        "(a constructor or configure that hangs)")])
    if "error" in box:
        return crashed_report("static", box["error"])
    return box["report"]


def check_in_subprocess(spec: dict[str, Any], work_dir: Path, smoke_steps: int, limit_s: float,
                        on_start: Callable[[int], None] | None = None, python: str = sys.executable,
                        threads: int | None = None,
                        cancel: threading.Event | None = None) -> tuple[CheckRecord, dict[str, Any] | None]:
    """``golfplan check --spec`` as a protected child: (its record, its report); a failed record and
    no report when it crashed, hung or ran out of memory. ``threads``: its CPU threads (a study's
    per-run count on a CPU profile); ``cancel``: set to kill it (the planner was interrupted)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path = work_dir / "spec.json"
    spec_path.write_text(spec_json(spec))
    out, err = work_dir / "check.json", work_dir / "check.stderr.log"
    cmd = [python, "-m", "golfplan", "check", "--spec", str(spec_path), "--json", "--smoke-steps", str(smoke_steps)]
    t0 = time.perf_counter()
    with procs.HostSlot() as concurrent:
        proc = procs.start(cmd, out, err, procs.child_env(concurrent, threads))
        if on_start:
            on_start(proc.pid)
        killed = procs.watch(proc, limit_s, cancel=cancel)
    seconds = time.perf_counter() - t0
    report = read_json(out) if not killed else None
    if report is not None and "ok" in report:
        return CheckRecord.from_report(report, seconds, where=str(work_dir)), report
    ex = procs.exit_of(proc.returncode, err, killed, limit_s)
    reason = ex.reason if ex.kind == "refused" else f"preflight {ex.reason}"
    return CheckRecord.failed(ex.kind, reason, seconds, where=str(work_dir)), None


class Preflight:
    """Where and how a study checks a configuration not checked yet (see the module's doc)."""

    def __init__(self, d: Any, registry: Any, verdicts: "Verdicts", in_run: bool, work_dir: Path,
                 limit_s: Callable[[Any], float], on_start: Callable[[int], None] | None = None,
                 threads: int | None = None, cancel: threading.Event | None = None) -> None:
        self.d, self.registry, self.verdicts = d, registry, verdicts
        self.in_run = in_run  # the default runner: the first run checks in its own process
        self.work_dir, self.limit_s, self.on_start = work_dir, limit_s, on_start
        self.threads, self.cancel = threads, cancel

    def before(self, name: str, spec: Any, key: str) -> tuple[CheckRecord | None, dict[str, Any] | None, bool]:
        """(the check's record, its report, whether the trial's first run is to check instead);
        ``name`` names the check's folder when it runs as its own process."""
        if self.d.checks == "none":
            return CheckRecord.skip(), None, False
        hit = self.verdicts.passed(key)
        if hit:
            return hit, None, False
        if self.d.checks == "static":
            t0 = time.perf_counter()
            report = static_check(spec, self.registry, self.d.nproc if self.d.nproc > 1 else None).to_dict()
            rec = CheckRecord.from_report(report, time.perf_counter() - t0)
        elif self.in_run:
            return None, None, True
        else:
            rec, report = check_in_subprocess(spec.to_dict(), self.work_dir / f"{name}-check", self.d.smoke_steps,
                                              self.limit_s(spec), self.on_start, threads=self.threads,
                                              cancel=self.cancel)
        if rec.ok:
            self.verdicts.store_passed(key, rec)
        return rec, report, False

    def from_run(self, key: str, outcome: Any) -> CheckRecord:
        """The record of a check a run did in its own process (``job.check``)."""
        if outcome.check is not None:
            rec = CheckRecord.from_report(outcome.check, where=outcome.run_dir)
        elif outcome.status == "refused":  # the run died or was killed inside its preflight
            rec = CheckRecord.failed(outcome.failure, outcome.reason, where=outcome.run_dir)
        else:  # a runner that does not check in its runs
            return CheckRecord.skip()
        if rec.ok:
            self.verdicts.store_passed(key, rec)
        return rec


# ---- what a study remembers -------------------------------------------------------------------


class Verdicts:
    """The passed checks and refusals of one study, kept in the study's attributes (shared by every
    worker) with a local cache. ``write(name, value)`` stores a study attribute: the Planner's."""

    def __init__(self, study: Any, registry: Any, write: Callable[[str, Any], None]) -> None:
        self.study, self.registry, self.write = study, registry, write
        self._passed: dict[str, CheckRecord] = {}

    def passed(self, key: str) -> CheckRecord | None:
        hit = self._passed.get(key) or CheckRecord.from_attr(self.study.user_attrs.get(CHECKED_PREFIX + key))
        return hit.as_cached() if hit else None

    def store_passed(self, key: str, rec: CheckRecord) -> None:
        from dataclasses import replace

        stored = replace(rec, cached=False)
        self._passed[key] = stored
        self.write(CHECKED_PREFIX + key, stored.to_attr())

    def refusals(self) -> list[Refusal]:
        return [r for k, v in self.study.user_attrs.items() if k.startswith(REFUSED_PREFIX)
                for r in [Refusal.from_attr(v)] if r is not None]

    def known_refusal(self, key: str, names: list[str]) -> Refusal | None:
        hit = Refusal.from_attr(self.study.user_attrs.get(REFUSED_PREFIX + key))
        if hit:
            return hit
        on = set(names)
        return next((r for r in self.refusals() if r.subset and set(r.subset) <= on), None)

    def remember(self, key: str, plugins: Plugins, reason: str, trial_number: int, space: Any = None,
                 report: dict[str, Any] | None = None) -> Refusal:
        """Store the refusal; when the check's failure does not depend on param values, as a
        forbidden subset that ``space`` never proposes again."""
        subset = self._subset(sorted(plugins), report) if report else None
        entry = Refusal(reason, trial_number, subset, key)
        self.write(REFUSED_PREFIX + key, entry.to_attr())
        if subset:
            self.write(REFUSED_PREFIX + "set:" + "+".join(subset), entry.to_attr())
            if space is not None:
                space.forbid(subset)
        return entry

    def _subset(self, names: list[str], report: dict[str, Any]) -> list[str] | None:
        from golfplan.registry import combination_problems

        failed = next((c for c in report.get("checks") or [] if c.get("status") == "fail"), None)
        if failed is None:
            return None
        if failed["name"] == "static":
            try:
                if combination_problems(self.registry.classes(names)):
                    return names
            except Exception:  # noqa: BLE001 - an unknown plugin: no subset to forbid
                return None
            return [failed["plugin"]] if failed.get("plugin") else None  # not compile-safe, no --allow-eager
        if failed["name"] in ("trace", "declarations"):
            return [failed["plugin"]] if failed.get("plugin") else names
        return None

    def forbid_known(self, space: Any) -> None:
        """Forbid, in ``space``, every subset this study (or another worker on it) refused."""
        for r in self.refusals():
            if r.subset:
                space.forbid(r.subset)


# ---- screening the search space -------------------------------------------------------------


@dataclass
class Screening:
    screened: dict[str, str] = field(default_factory=dict)  # searched plugins refused alone: name -> reason
    domains: dict[str, dict[str, list]] = field(default_factory=dict)  # plugin -> param -> values kept


def screen(d: Any, registry: Any, refusal: Callable[[Plugins], str]) -> Screening:
    """Screen a tune study's plugins and small param domains with ``refusal(plugins) -> reason``
    (the static check of those plugins with the study's fixed ones; '' when it passes)."""
    from golfplan.planner.space import ordered, param_domain

    out = Screening()
    if d.mode != "tune":
        return out
    for name in list(d.plugins) + list(d.always):
        given = d.plugins.get(name, d.always.get(name, {}))
        alone = refusal({name: given})
        if alone:
            if name in d.plugins and d.checks != "none":
                out.screened[name] = alone
            continue  # refused with its defaults: its values cannot be told apart
        cls = registry.get(name)
        for pname, spec in cls.params.items():
            domain = param_domain(spec)
            if pname in given or domain is None or ordered(cls, pname):
                continue
            ok = [v for v in domain if not refusal({name: {**given, pname: v}})]
            if ok and len(ok) < len(domain):
                out.domains.setdefault(name, {})[pname] = ok
    return out
