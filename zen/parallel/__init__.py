"""Parallelism on ``torch.distributed`` (the parallelism chapter), one module per idea.

* :mod:`~zen.parallel.launch` — start worker processes (from a notebook or under ``torchrun``);
* :mod:`~zen.parallel.collectives` — ring all-reduce from send/recv, the α–β cost model;
* :mod:`~zen.parallel.data_parallel` — gradient all-reduce data parallelism from scratch;
* :mod:`~zen.parallel.parameter_server` — the parameter server it replaced;
* :mod:`~zen.parallel.zero` — ZeRO memory per device and a sharded Adam;
* :mod:`~zen.parallel.tensor_parallel` — Megatron column/row-parallel layers;
* :mod:`~zen.parallel.pipeline` — GPipe and 1F1B schedules, bubbles, a real pipeline;
* :mod:`~zen.parallel.calculator` — memory and communication of a strategy, and its widget;
* ``python -m zen.parallel.train`` — a data-parallel training script for ``torchrun``.
"""

from zen.parallel.launch import init_from_env, launch

__all__ = ["launch", "init_from_env"]
