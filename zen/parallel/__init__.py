"""Parallelism on ``torch.distributed`` (the parallelism chapter), one module per idea.

* :mod:`~zen.parallel.launch` — start worker processes (from a notebook or under ``torchrun``);
* :mod:`~zen.parallel.collectives` — ring all-reduce from send/recv, the α–β cost model;
* :mod:`~zen.parallel.alpha_beta` — measuring α and β, and timing an all-reduce to check it;
* :mod:`~zen.parallel.data_parallel` — gradient all-reduce data parallelism from scratch;
* :mod:`~zen.parallel.parameter_server` — the parameter server it replaced;
* :mod:`~zen.parallel.overlap` — a bucketed all-reduce launched during backward;
* :mod:`~zen.parallel.zero` — ZeRO memory per device, flat buckets, stages 0 and 1;
* :mod:`~zen.parallel.zero_grads` — ZeRO stage 2 (gradients reduce-scattered in backward);
* :mod:`~zen.parallel.zero_params` — ZeRO stage 3 (parameters gathered per layer, freed);
* :mod:`~zen.parallel.memory` — the bytes of weights, gradients and state a rank holds;
* :mod:`~zen.parallel.tensor_parallel` — Megatron column/row-parallel layers;
* :mod:`~zen.parallel.ring_attention` — sequence parallelism: attention around a ring;
* :mod:`~zen.parallel.pipeline` — GPipe and 1F1B schedules, bubbles, a real pipeline;
* :mod:`~zen.parallel.calculator` — memory, bubble and traffic of a 3-D layout, its widget;
* ``python -m zen.parallel.train`` — a data-parallel training script for ``torchrun``.
"""

from zen.parallel.launch import init_from_env, launch

__all__ = ["launch", "init_from_env"]
