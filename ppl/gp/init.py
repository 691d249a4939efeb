"""Where pseudo points start: k-means++ centres of (a random subsample of) the inputs,
pseudo outputs by k-nearest-neighbour averages, and weights from cluster shares.

Everything runs on at most `subsample` points, so initialisation costs the same for
N = 10⁴ and N = 10⁶ (time and memory flat in N).
"""

import jax
import jax.numpy as jnp

__all__ = ["kmeans_pp", "lloyd", "coreset_init", "LLOYD_STEPS", "NEIGHBOURS"]

#: Lloyd iterations after the k-means++ seeding.
LLOYD_STEPS = 10
#: Neighbours averaged for each pseudo output.
NEIGHBOURS = 10


def _sq_dist(A, B):
    return jnp.sum(jnp.square(A[:, None, :] - B[None, :, :]), axis=-1)


def kmeans_pp(key, X, M):
    """M centres among the rows of X by D² sampling (Arthur & Vassilvitskii 2007)."""
    keys = jax.random.split(key, M)
    first = X[jax.random.randint(keys[0], (), 0, X.shape[0])]
    C = jnp.zeros((M, X.shape[1]), X.dtype).at[0].set(first)
    d2 = jnp.sum(jnp.square(X - first), axis=-1)

    def pick(i, carry):
        C, d2 = carry
        logits = jnp.log(jnp.maximum(d2, jnp.finfo(X.dtype).tiny))
        x = X[jax.random.categorical(keys[i], logits)]
        return C.at[i].set(x), jnp.minimum(d2, jnp.sum(jnp.square(X - x), axis=-1))

    return jax.lax.fori_loop(1, M, pick, (C, d2))[0]


def lloyd(X, C, steps=LLOYD_STEPS):
    """Lloyd's iterations; an empty cluster keeps its centre. Returns (centres, counts)."""
    M = C.shape[0]

    def assign(C):
        return jnp.argmin(_sq_dist(X, C), axis=1)

    def step(C, _):
        a = assign(C)
        counts = jax.ops.segment_sum(jnp.ones(X.shape[0], X.dtype), a, M)
        sums = jax.ops.segment_sum(X, a, M)
        C = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], C)
        return C, None

    C = jax.lax.scan(step, C, None, length=steps)[0]
    counts = jax.ops.segment_sum(jnp.ones(X.shape[0], X.dtype), assign(C), M)
    return C, counts


def coreset_init(key, X, y, M, subsample):
    """(X_M, Y_M, β): k-means++/Lloyd centres of a subsample of X, the mean output of
    each centre's nearest neighbours, and β_m = (points in cluster m) · N / subsample,
    so the weights add up to N (at least 1 each: an empty cluster stands for 1 point)."""
    X, y = jnp.asarray(X), jnp.asarray(y)
    N = X.shape[0]
    k_sub, k_pp = jax.random.split(key)
    if subsample < N:
        idx = jax.random.choice(k_sub, N, (subsample,), replace=False)
        X, y = X[idx], y[idx]
    n = X.shape[0]
    C, counts = lloyd(X, kmeans_pp(k_pp, X, M))
    k = min(NEIGHBOURS, n)
    near = jax.lax.top_k(-_sq_dist(C, X), k)[1]
    Y = jnp.mean(y[near], axis=1)
    beta = jnp.maximum(counts * (N / n), 1.0)
    return C, Y, beta
