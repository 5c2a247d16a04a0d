"""Model compression (the compression chapter), one module per method.

* :mod:`~zen.compress.prune` — magnitude pruning, unstructured and structured;
* :mod:`~zen.compress.sparsity` — 2:4 semi-structured masks, pruning a transformer's FFN channels;
* :mod:`~zen.compress.quant` — integer quantization: scales, int8 layers, fake quantization;
* :mod:`~zen.compress.rtn` — round-to-nearest weights per tensor / channel / group, int4 packing;
* :mod:`~zen.compress.gptq` — GPTQ: calibration Hessian, column-by-column error feedback;
* :mod:`~zen.compress.outliers` — activation outliers: SmoothQuant and AWQ scales;
* :mod:`~zen.compress.nf4` — QLoRA's 4-bit NormalFloat: quantile levels, blocks, packing;
* :mod:`~zen.compress.distill` — knowledge distillation from a teacher's softened outputs;
* :mod:`~zen.compress.lowrank` — low-rank factorisation of weight matrices by the SVD.

Layers are swapped into a trained model with :func:`zen.swap.swap_linears`.
"""
