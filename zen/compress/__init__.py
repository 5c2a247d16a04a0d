"""Model compression (the compression chapter), one module per method.

* :mod:`~zen.compress.prune` — magnitude pruning, unstructured and structured;
* :mod:`~zen.compress.quant` — integer quantization: scales, int8 layers, fake quantization;
* :mod:`~zen.compress.nf4` — QLoRA's 4-bit NormalFloat: quantile levels, blocks, packing;
* :mod:`~zen.compress.distill` — knowledge distillation from a teacher's softened outputs;
* :mod:`~zen.compress.lowrank` — low-rank factorisation of weight matrices by the SVD.

Layers are swapped into a trained model with :func:`zen.swap.swap_linears`.
"""
