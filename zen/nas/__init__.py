"""Neural architecture search (the NAS chapter), one module per idea.

* :mod:`~zen.nas.space` — a discrete search space (sampling, one-choice mutation, one-hot
  encoding, a feasibility constraint) and the digits CNN space with its analytic cost model;
* :mod:`~zen.nas.search` — a cached evaluator, random search and regularised evolution
  (tournament selection, mutation, ageing; Real et al., 2019) at a budget of evaluations;
* :mod:`~zen.nas.darts` — DARTS' mixed operation (a softmax over architecture weights α) and
  its first-order alternating update (Liu et al., 2019).
"""
