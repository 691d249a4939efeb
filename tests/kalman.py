"""Exact answers for the linear-Gaussian state-space model used by the SMC tests.

x_t = phi · x_{t-1} + q · e_t, x_{-1} = 0;  y_t = x_t + r · u_t;  e, u iid N(0, 1).
"""

import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

R = 0.5  # observation noise sd, known in every test model


def simulate(seed, length, phi, q):
    rng = np.random.default_rng(seed)
    x, xs = 0.0, []
    for _ in range(length):
        x = phi * x + q * rng.normal()
        xs.append(x)
    return np.asarray(xs) + R * rng.normal(size=length)


def _step(phi, q):
    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(phi * x_prev, q))
        ppl.sample("y", dist.Normal(x, R), obs=y_t)
        return x, x

    return step


@ppl.model
def known(y, phi=0.9, q=1.0):
    """All parameters known: only the trajectory x is latent."""
    ppl.scan(_step(phi, q), jnp.zeros(()), y)


@ppl.model
def unknown(y):
    """phi and q unknown (static sites before the loop)."""
    phi = ppl.sample("phi", dist.Uniform(-1.0, 1.0))
    q = ppl.sample("q", dist.HalfNormal(1.0))
    ppl.scan(_step(phi, q), jnp.zeros(()), y)


def kalman(y, phi, q):
    """Log likelihood, filtering means/variances and RTS smoothing means/variances.

    phi and q may be arrays (a grid): everything broadcasts over them."""
    phi, q = np.asarray(phi, float), np.asarray(q, float)
    m = np.zeros(np.broadcast(phi, q).shape)
    p = np.zeros_like(m)
    loglik = np.zeros_like(m)
    fm, fp, pm, pp = [], [], [], []
    for y_t in np.asarray(y, float):
        m_pred, p_pred = phi * m, phi**2 * p + q**2
        s = p_pred + R**2
        loglik += -0.5 * (np.log(2 * np.pi * s) + (y_t - m_pred) ** 2 / s)
        gain = p_pred / s
        m, p = m_pred + gain * (y_t - m_pred), (1 - gain) * p_pred
        fm.append(m), fp.append(p), pm.append(m_pred), pp.append(p_pred)
    sm, sp = [fm[-1]], [fp[-1]]
    for t in range(len(fm) - 2, -1, -1):
        c = fp[t] * phi / pp[t + 1]
        sm.insert(0, fm[t] + c * (sm[0] - pm[t + 1]))
        sp.insert(0, fp[t] + c**2 * (sp[0] - pp[t + 1]))
    return loglik, np.array(fm), np.array(fp), np.array(sm), np.array(sp)


def grid_posterior(y, size=200):
    """Exact posterior means and sds of (phi, q) under `unknown`'s priors, on a grid."""
    phi = np.linspace(-0.995, 0.995, size)[:, None]
    q = np.linspace(0.005, 2.5, size)[None, :]
    loglik = kalman(y, phi, q)[0]
    log_post = loglik + np.log(2 / np.sqrt(2 * np.pi)) - 0.5 * q**2  # HalfNormal(1); flat phi
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    out = {}
    for name, v in (("phi", phi), ("q", q)):
        mean = float((w * v).sum())
        out[name] = (mean, float(np.sqrt((w * (v - mean) ** 2).sum())))
    return out
