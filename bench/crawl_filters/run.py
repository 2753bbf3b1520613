"""Running the steps, each alone on every document and all as the funnel, as jobs over forked
worker processes; and counting what each step and each of its rules keeps and drops."""

from __future__ import annotations

import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from bench.crawl_filters.corpus import by_corpus
from bench.crawl_filters.steps import Step, StepResult


@dataclass
class Outcome:
    step: Step
    inputs: list[dict]
    result: StepResult
    seconds: float
    rules: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def timed_run(step: Step, docs: list[dict]) -> tuple[StepResult, float]:
    started = time.perf_counter()
    result = step.run(docs)
    if not isinstance(result, StepResult):
        result = StepResult(*result)
    result = result._replace(counters=dict(result.counters or {}), details=dict(result.details or {}))
    if len(result.kept) + len(result.dropped) != len(docs):
        raise AssertionError(f"{step.name}: {len(docs)} in, {len(result.kept)} kept + {len(result.dropped)} dropped")
    return result, time.perf_counter() - started


_FORKED: dict = {}  # what the worker processes inherit: the steps and the documents


def _job(job: str) -> tuple[str, list[tuple[StepResult, float]]]:
    steps, docs = _FORKED["steps"], _FORKED["docs"]
    if job != "funnel":
        return job, [timed_run(next(s for s in steps if s.name == job), docs)]
    results = []
    for step in steps:
        if step.funnel:
            results.append(timed_run(step, docs))
            docs = results[-1][0].kept
    return job, results


def run_all(steps: list[Step], docs: list[dict], workers: int) -> tuple[list[Outcome], list[Outcome]]:
    """Every `alone` step on all documents, and the funnel (one job: its steps in order), as jobs
    over `workers` forked processes, the costliest first."""
    jobs = ["funnel", *(s.name for s in sorted((s for s in steps if s.alone), key=lambda s: -s.cost))]
    _FORKED.update(steps=steps, docs=docs)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            done = dict(pool.map(_job, jobs))
    else:
        done = dict(map(_job, jobs))
    alone = []
    for step in steps:
        if step.alone:
            (result, seconds), = done[step.name]
            alone.append(Outcome(step, docs, result, seconds))
    funnel, current = [], docs
    for step, (result, seconds) in zip((s for s in steps if s.funnel), done["funnel"]):
        funnel.append(Outcome(step, current, result, seconds))
        current = result.kept
    for outcome in alone + funnel:
        summarise(outcome)
    return alone, funnel



def chars(docs) -> int:
    return sum(len(d["text"] or "") for d in docs)


def summarise(o: Outcome) -> None:
    n_in, kept = len(o.inputs), o.result.kept
    o.summary = {
        "docs_in": n_in, "kept": len(kept), "dropped": len(o.result.dropped),
        "pct_dropped": 100 * len(o.result.dropped) / n_in if n_in else 0.0,
        "in_by_corpus": dict(by_corpus(o.inputs)), "kept_by_corpus": dict(by_corpus(kept)),
        "chars_in": chars(o.inputs), "chars_out": chars(kept), "seconds": round(o.seconds, 2),
        "counters": o.result.counters,
    }
    reasons: dict[str, list[dict]] = defaultdict(list)
    for doc, reason in o.result.dropped:
        reasons[reason].append(doc)
    order = o.step.rule_order

    def position(reason: str) -> tuple[int, str]:
        prefix = reason.split(":", 1)[0]
        return (order.index(prefix) if prefix in order else len(order)), reason

    def reached(reason: str) -> int:
        """Documents that reached the filter of `reason`: the step's input less the drops of the
        filters before it."""
        if not order:
            return n_in
        mine = position(reason)[0]
        return n_in - sum(len(d) for r, d in reasons.items() if position(r)[0] < mine)

    o.rules = []
    for reason in sorted(reasons, key=position):
        dropped, docs_in = reasons[reason], reached(reason)
        o.rules.append({"rule": reason, "docs_in": docs_in, "kept": docs_in - len(dropped), "dropped": len(dropped),
                        "pct_dropped": 100 * len(dropped) / docs_in if docs_in else 0.0,
                        "dropped_by_corpus": dict(by_corpus(dropped))})
