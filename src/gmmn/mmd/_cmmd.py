r"""The conditional MMD (CMMD) of Ren, Li, Luo & Zhu (NeurIPS 2016), from Gram matrices.

Private helper of :mod:`gmmn.mmd` (which validates the inputs and exports :func:`cmmd2`);
imports nothing from the package.

Samples x (n, d) with conditions c (n, q) and samples y (m, d) with conditions e (m, q). With
an output kernel k (the MMD's) and a condition kernel h, the estimated conditional embedding
operator of a sample is C = Psi (K + lam I)^{-1} Phi^T (Psi: output features, Phi: condition
features, K = Phi^T Phi), and the squared CMMD is the Hilbert-Schmidt distance of the two:

    CMMD^2 = || C_x - C_y ||^2_HS
           = Tr(K_x A_x L_x A_x) + Tr(K_y A_y L_y A_y) - 2 Tr(K_xy A_y L_yx A_x),

    K_x = h(c, c) (n, n), K_y = h(e, e) (m, m), K_xy = h(c, e) (n, m),
    L_x = k(x, x), L_y = k(y, y), L_yx = k(y, x),  A_x = (K_x + lam I)^{-1}, A_y likewise.

Written as Frobenius products it is one weighted sum over the pooled Gram matrix of outputs,

    CMMD^2 = <W_x, L_x> + <W_y, L_y> - 2 <W_xy, L_xy>,
    W_x = A_x K_x A_x,  W_y = A_y K_y A_y,  W_xy = A_x K_xy A_y,

where the weights W depend on the conditions only. The solves run in float64 (Cholesky of
K + lam I); the kernel values are summed in float64 too.

Discrete conditions under the delta kernel (h = 1 for equal conditions, else 0): with n_k and
m_k rows of class k and mu_k the class's mean embedding,

    CMMD^2 = sum_k || n_k / (n_k + lam) mu_k(x) - m_k / (m_k + lam) mu_k(y) ||^2,

so with n_k = m_k for every k it is sum_k (n_k / (n_k + lam))^2 MMD^2_biased(x_k, y_k), and
as lam -> 0 the plain sum of per-class biased MMDs (every class weighs the same, whatever its
frequency). A class present in one sample only contributes its shrunk ||mu_k||^2.

That reduction is how the delta kernel is computed (:func:`cmmd2_delta`): no solve, one
tiled quadratic form per class with coefficients 1/(n_k+lam)^2, 1/(m_k+lam)^2 and
-1/((n_k+lam)(m_k+lam)) (the MMD's own memory-bounded Gram tiles and hand-written
gradient), in the samples' dtype as :func:`gmmn.mmd.mmd2` computes. Other condition kernels
take the dense route, :func:`cmmd2_dense`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._blocked import QuadFormMMD, choose_block
from ._kernels import KERNELS, KernelSpec, sq_dists

CONDITION_KERNELS = ("delta", "gaussian")

# Bytes the dense estimator may hold: about eight float64 matrices of (n + m)^2 entries
# (the pooled output Gram matrix, the weights, their temporaries). 2000 + 2000 rows need 1 GiB.
CMMD_MEMORY_BUDGET = 2**30
CMMD_MATRICES = 8


def cmmd_bytes(n: int, m: int) -> int:
    """The memory the dense estimator holds for n and m rows (float64 matrices)."""
    return 8 * CMMD_MATRICES * (n + m) ** 2


def condition_gram(a: Tensor, b: Tensor, kernel: str, spec: KernelSpec | None) -> Tensor:
    """(n, m) float64 condition kernel h(a_i, b_j): delta (rows equal) or a Gaussian mixture."""
    if kernel == "delta":
        return (a[:, None, :] == b[None, :, :]).all(-1).to(torch.float64)  # (n, m)
    return _gram(a.to(torch.float64), b.to(torch.float64), spec)


def _gram(a: Tensor, b: Tensor, spec: KernelSpec) -> Tensor:
    """(n, m) output kernel in float64: squared distances in the inputs' dtype, values in
    float64 (the weights W can be large, so the sum over the Gram matrix needs the digits)."""
    d2 = sq_dists(a, b).to(torch.float64)
    kern = KERNELS[spec.name]
    return sum(w * kern.value(d2, s) for w, s in zip(spec.weights, spec.sigmas, strict=True))


def _ridge_inverse_times(gram: Tensor, lam: float, rhs: Tensor) -> Tensor:
    """(gram + lam I)^{-1} rhs by Cholesky; a ValueError when it is not positive definite."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    chol, info = torch.linalg.cholesky_ex(gram + lam * eye)
    if int(info) != 0:
        raise ValueError("the condition Gram matrix plus lam * I is not positive definite")
    return torch.cholesky_solve(rhs, chol)


def cmmd_weights(c: Tensor, e: Tensor, *, kernel: str, spec: KernelSpec | None,
                 lam: float) -> tuple[Tensor, Tensor, Tensor]:
    """W_x (n, n), W_y (m, m), W_xy (n, m) of the module docstring, float64."""
    k_x, k_y = condition_gram(c, c, kernel, spec), condition_gram(e, e, kernel, spec)
    k_xy = condition_gram(c, e, kernel, spec)
    ak_x = _ridge_inverse_times(k_x, lam, k_x)  # A_x K_x (n, n)
    ak_y = _ridge_inverse_times(k_y, lam, k_y)
    w_x = _ridge_inverse_times(k_x, lam, ak_x.T)  # A_x K_x A_x: (A_x K_x)^T = K_x A_x
    w_y = _ridge_inverse_times(k_y, lam, ak_y.T)
    ak_xy = _ridge_inverse_times(k_x, lam, k_xy)  # A_x K_xy (n, m)
    w_xy = _ridge_inverse_times(k_y, lam, ak_xy.T).T  # (A_y K_xy^T A_x)^T = A_x K_xy A_y
    return w_x, w_y, w_xy


def cmmd2_dense(x: Tensor, y: Tensor, c: Tensor, e: Tensor, *, spec: KernelSpec,
                condition_kernel: str, condition_spec: KernelSpec | None, lam: float) -> Tensor:
    """CMMD^2 of validated inputs (float64, differentiable in x, y and Gaussian conditions)."""
    w_x, w_y, w_xy = cmmd_weights(c, e, kernel=condition_kernel, spec=condition_spec, lam=lam)
    return ((w_x * _gram(x, x, spec)).sum() + (w_y * _gram(y, y, spec)).sum()
            - 2 * (w_xy * _gram(x, y, spec)).sum())


def cmmd2_delta(x: Tensor, y: Tensor, c: Tensor, e: Tensor, *, spec: KernelSpec, lam: float,
                budget: int) -> Tensor:
    """CMMD^2 under the delta condition kernel by its per-class reduction (docstring above):
    one Gram quadratic form per class, in tiles of ``budget`` bytes."""
    _, ids = torch.unique(torch.cat([c, e]), dim=0, return_inverse=True)
    ids_x, ids_y = ids[: len(c)], ids[len(c):]
    total = x.new_zeros(())
    for k in torch.unique(ids).tolist():
        xk, yk = x[ids_x == k], y[ids_y == k]
        a, b = len(xk) + lam, len(yk) + lam
        if not len(yk):  # only x has the class: its shrunk ||mu_k||^2; y_k a dummy row
            xk, yk, coefs = xk, xk[:1], (1 / a**2, 0.0, 0.0)
        elif not len(xk):
            xk, coefs = yk[:1], (0.0, 1 / b**2, 0.0)
        else:
            coefs = (1 / a**2, 1 / b**2, -1 / (a * b))
        block = choose_block(len(xk) + len(yk), spec, x.dtype, x.device, budget)
        total = total + QuadFormMMD.apply(xk, yk, spec, coefs, 0.0, block)
    return total
