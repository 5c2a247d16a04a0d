"""A sparse mixture-of-experts feed-forward layer: route, dispatch, compute, combine.

Each token ``x`` (``d_model`` features) is scored by a linear router, and only the ``k`` best
of ``n_experts`` feed-forward networks (SwiGLU MLPs) run on it::

    p = softmax(W_r x)                       (n_experts,)   in fp32, whatever the input dtype
    S = top-k indices of p,  w_i = p_i / Σ_{j∈S} p_j        (k,)  renormalised gate weights
    y = Σ_{i∈S} w_i · E_i(x),  E_i(x) = W_down,i (silu(W_gate,i x) ⊙ W_up,i x)

Dispatch is sort-based: the ``N·k`` (token, slot) assignments are ordered by expert with a
stable sort (first choices before second choices, then token order), so each expert reads one
contiguous slice; an expert holds at most ``capacity = ceil(capacity_factor · N·k / n_experts)``
assignments and the rest are *dropped* (their slot contributes zero; the residual stream
carries the token past the layer)::

    x (N, d) ──router──▶ experts (N, k), weights (N, k)
          └─gather in expert order──▶ (kept, d) ──E_0 | E_1 | … (slices)──▶ (kept, d)
                                         ──× weight, index_add by token──▶ y (N, d)

Auxiliary losses: the load-balancing loss of Switch/GShard,
``n_experts · Σ_i f_i P_i`` (``f_i`` the fraction of assignments routed to expert ``i``,
``P_i`` its mean router probability), and the router z-loss of ST-MoE,
``mean(logsumexp(logits)²)``. :class:`ExpertParallelMoE` shards the experts over the ranks of
a process group and moves tokens to them with ``all_to_all``.
"""

from zen.moe.expert_parallel import ExpertParallelMoE
from zen.moe.layer import MoE
from zen.moe.routing import Routing, capacity, combine, dispatch, load_balancing_loss, route, z_loss

__all__ = [
    "route",
    "capacity",
    "dispatch",
    "combine",
    "load_balancing_loss",
    "z_loss",
    "Routing",
    "MoE",
    "ExpertParallelMoE",
]
