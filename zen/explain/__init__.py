"""Attribution: which inputs a prediction depends on, and by how much.

Every method explains one scalar, the model's output ``F(x) = model(x)[target]``, with one
number per input feature:

    saliency            |∂F/∂x|  (or the signed gradient)                    Simonyan et al. 2014
    gradient × input    x ⊙ ∂F/∂x
    integrated grads    (x − x') ⊙ ∫₀¹ ∂F/∂x (x' + α(x − x')) dα     Sundararajan et al. 2017
    SmoothGrad          mean over n draws of ∂F/∂x (x + ε),  ε ~ N(0, σ²)    Smilkov et al. 2017
    occlusion           F(x) − F(x with a window set to the baseline), averaged per feature
    Shapley values      φᵢ = Σ_{S ∌ i} |S|!(M−|S|−1)!/M! · [v(S ∪ {i}) − v(S)]  Lundberg & Lee 2017
    kernel SHAP         the Shapley-kernel weighted least-squares fit of v(S) on 1[i ∈ S]
    attention rollout   R = Â_L ⋯ Â_1,  Â = ½(mean-over-heads A) + ½ I       Abnar & Zuidema 2020

Integrated gradients is *complete*: Σᵢ attrᵢ = F(x) − F(x') up to the quadrature error of the
integral, which shrinks as ``steps`` grows; :func:`integrated_gradients` can return that gap.
Shapley values (and kernel SHAP once every coalition is enumerated) are complete exactly, with
``v(S) = F(x on S, x' elsewhere)``.

    x (B, *features) ─ model ─▶ (B, C) ─ [target] ─▶ F (B,) ─ explain ─▶ attr (B, *features)
"""

from zen.explain.gradients import (
    RIEMANN,
    Model,
    completeness_delta,
    gradient,
    gradient_x_input,
    integrated_gradients,
    output,
    riemann,
    saliency,
    smoothgrad,
)
from zen.explain.perturbation import coalition_values, kernel_shap, occlusion, shapley_values
from zen.explain.rollout import attention_rollout

__all__ = [
    "RIEMANN",
    "Model",
    "attention_rollout",
    "coalition_values",
    "completeness_delta",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "kernel_shap",
    "occlusion",
    "output",
    "riemann",
    "saliency",
    "shapley_values",
    "smoothgrad",
]
