"""The standard objectives, each written as a program with the `ppl.vi` operations
(nothing here is special-cased: a user's own objective is built the same way).

Every one takes `num_particles` (K) and a `baseline` for score-function sites.
"""

from ppl.vi.program import draw, logmeanexp, mean, objective, particles, score

__all__ = ["ELBO", "IWAE"]


def _log_weight(model, guide):
    d = draw(guide)
    return score(model, d) - d.log_q


@objective(bound=True)
def ELBO(model, guide, num_particles=1):
    """Evidence lower bound E_q[log p(x, z) - log q(z)], averaged over K draws."""
    return mean(particles(lambda: _log_weight(model, guide), num_particles))


@objective(bound=True)
def IWAE(model, guide, num_particles=5):
    """Importance-weighted bound E[log (1/K) Σ_k p(x, z_k) / q(z_k)] (Burda et al. 2016);
    with baseline="leave_one_out" its score-function sites get VIMCO's baselines."""
    return logmeanexp(particles(lambda: _log_weight(model, guide), num_particles))
