"""Random search and regularised evolution at a fixed budget of evaluations.

Both maximise ``score = evaluate(arch)`` through a :class:`CachedEvaluator`: an architecture
is trained (evaluated) once, and the budget counts distinct evaluations, never cache hits.

Regularised evolution (Real et al., 2019; "aging evolution")::

    population ← P random architectures (evaluated)
    repeat until the budget is spent:
        sample S members of the population uniformly (the tournament)
        child  ← mutate(best of the tournament)
        append the child (evaluated) and remove the OLDEST member — not the worst

Removing the oldest makes every architecture die young however good it is, so a lucky score
cannot stay in the population forever: a regulariser against noisy evaluations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from zen import validate
from zen.nas.space import Arch, SearchSpace

__all__ = ["CachedEvaluator", "SearchResult", "random_search", "regularized_evolution"]


class CachedEvaluator:
    """``evaluate(arch)`` called at most once per architecture.

    ``n_evaluations`` counts distinct architectures evaluated (the budget's unit),
    ``cache_hits`` the calls answered from the cache.
    """

    def __init__(self, evaluate: Callable[[Arch], float]) -> None:
        if not callable(evaluate):
            raise TypeError(f"evaluate must be callable, got {type(evaluate).__name__}")
        self.evaluate = evaluate
        self.cache: dict[Arch, float] = {}
        self.cache_hits = 0

    @property
    def n_evaluations(self) -> int:
        return len(self.cache)

    def __call__(self, arch: Arch) -> float:
        if arch in self.cache:
            self.cache_hits += 1
        else:
            self.cache[arch] = float(self.evaluate(arch))
        return self.cache[arch]


@dataclass
class SearchResult:
    """What a search saw: ``history`` lists ``(arch, score)`` in the order they were proposed
    (cache hits included); ``population`` is the final population (evolution only)."""

    history: list[tuple[Arch, float]]
    n_evaluations: int
    cache_hits: int
    population: list[tuple[Arch, float]] = field(default_factory=list)

    @property
    def best(self) -> tuple[Arch, float]:
        """The best ``(arch, score)`` proposed."""
        return max(self.history, key=lambda h: h[1])

    def best_so_far(self) -> np.ndarray:
        """Best score after each distinct evaluation, shape ``(n_evaluations,)``."""
        seen: set[Arch] = set()
        curve: list[float] = []
        for arch, score in self.history:
            if arch not in seen:
                seen.add(arch)
                curve.append(max(score, curve[-1]) if curve else score)
        return np.array(curve)


def _evaluator(space: SearchSpace, evaluate: Callable[[Arch], float] | CachedEvaluator,
               budget: int) -> CachedEvaluator:  # fmt: skip
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
    validate.positive_int(budget, "budget")
    n = len(space)
    if budget > n:
        raise ValueError(f"budget {budget} exceeds the {n} feasible architectures of the space")
    return evaluate if isinstance(evaluate, CachedEvaluator) else CachedEvaluator(evaluate)


def random_search(space: SearchSpace, evaluate: Callable[[Arch], float] | CachedEvaluator,
                  budget: int, rng: np.random.Generator) -> SearchResult:  # fmt: skip
    """Evaluate uniformly sampled architectures until ``budget`` distinct ones are scored."""
    ev = _evaluator(space, evaluate, budget)
    start, hits0 = ev.n_evaluations, ev.cache_hits
    history: list[tuple[Arch, float]] = []
    while ev.n_evaluations - start < budget:
        arch = space.sample(rng)
        history.append((arch, ev(arch)))
    return SearchResult(history, ev.n_evaluations - start, ev.cache_hits - hits0)


def regularized_evolution(
    space: SearchSpace,
    evaluate: Callable[[Arch], float] | CachedEvaluator,
    budget: int,
    rng: np.random.Generator,
    population_size: int = 10,
    tournament_size: int = 3,
    max_steps: int | None = None,
) -> SearchResult:
    """Regularised (ageing) evolution until ``budget`` distinct architectures are scored.

    A child already in the cache joins the population (and ages it) at no cost to the budget.
    ``max_steps`` (default ``50·budget``) bounds the children proposed, in case mutation keeps
    revisiting a tiny space; the search then stops early.
    """
    ev = _evaluator(space, evaluate, budget)
    validate.positive_int(population_size, "population_size")
    validate.positive_int(tournament_size, "tournament_size")
    if tournament_size > population_size:
        raise ValueError(f"tournament_size ({tournament_size}) must not exceed "
                         f"population_size ({population_size})")  # fmt: skip
    if budget < population_size:
        raise ValueError(f"budget ({budget}) must be at least population_size "
                         f"({population_size}): the first population is evaluated")  # fmt: skip
    start, hits0 = ev.n_evaluations, ev.cache_hits
    history: list[tuple[Arch, float]] = []
    population: deque[tuple[Arch, float]] = deque()
    while len(population) < population_size:  # distinct random members
        arch = space.sample(rng)
        if arch in (a for a, _ in population):
            continue
        member = (arch, ev(arch))
        population.append(member)
        history.append(member)
    max_steps = 50 * budget if max_steps is None else max_steps
    for _ in range(max_steps):
        if ev.n_evaluations - start >= budget:
            break
        picks = rng.choice(population_size, size=tournament_size, replace=False)
        parent = max((population[i] for i in picks), key=lambda m: m[1])[0]
        child = space.mutate(parent, rng)
        member = (child, ev(child))
        population.append(member)  # youngest at the right
        population.popleft()  # the oldest dies, whatever its score
        history.append(member)
    return SearchResult(history, ev.n_evaluations - start, ev.cache_hits - hits0, list(population))
