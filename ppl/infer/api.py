"""`ppl.infer()`: one call from a bound model to a Posterior."""

import numbers
import os

import jax
import numpy as np

from ppl.core.checks import did_you_mean
from ppl.core.model import as_bound_model, as_key
from ppl.errors import OptionError, PPLError
from ppl.infer.registry import resolve
from ppl.infer.sharding import CHAIN_METHODS, chain_mesh

__all__ = ["infer"]

_COMMON = (
    "num_samples", "num_warmup", "num_chains", "seed", "progress", "chain_method", "checkpoint",
    "convergence_checks",
)  # fmt: skip


#: NumPyro's keywords of MCMC.run / MCMC() that ppl has elsewhere: the hint for each.
_NUMPYRO_OPTIONS = {
    "init_params": "starting values are an option of the method: "
    "method={method}(init={{'site': value, ...}}) (constrained values; the other sites "
    "start as with init='uniform')",
    "extra_fields": "per-draw statistics are already in post.sample_stats (diverging, energy, "
    "tree_depth, accept_prob, ...) and totals per chain in post.diagnostics",
}
_NUMPYRO_CHAIN_METHODS = {
    "parallel": "'sharded' (chains split over jax.devices())",
    "sequential": "'vectorized' (one vmap on one device; chains do not run one by one)",
}


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def infer(
    model, method="nuts", *, num_samples=1000, num_warmup=None, num_chains=4, seed=0,
    progress=None, chain_method=None, checkpoint=None, convergence_checks=None, **options,
):  # fmt: skip
    """Run inference on a bound model and return a `Posterior`.

    method: a name ("nuts", "rwmh", ...) for its defaults, or a method object
        (e.g. `ppl.mcmc.NUTS(target_accept=0.9)`) for configuration.
    num_samples: draws kept per chain. num_chains: independent chains (vectorized).
    num_warmup: tuning steps of MCMC-family methods (default: num_samples).
    seed: an int or a JAX key; the same seed gives the same draws on one machine.
    progress: progress bar; None shows it when writing to a terminal.
    chain_method: how MCMC-family methods lay out chains: "vectorized" (default; one
        vmap on the default device) or "sharded" (split evenly over `jax.devices()`,
        also across hosts after `jax.distributed.initialize()`; num_chains must be a
        multiple of the device count). Both run the same chains from the same keys;
        values agree up to floating-point rounding, which warmup can amplify into a
        different (equally valid) path for a chain.
    checkpoint: a file path for MCMC-family methods. The sampler state is written
        there after every chunk of steps; calling again with the same path, model,
        data, method, settings, seed and chain layout resumes a killed run and returns
        exactly the draws of an uninterrupted one. The file is kept at the end, so a
        rerun returns the same result without sampling (delete the file to sample
        afresh); a file from another run or a damaged one raises
        `ppl.errors.CheckpointError`, never restarts silently.
    convergence_checks: MCMC-family methods compute rank-normalised R-hat and bulk/tail
        ESS of every latent component after the run and warn about poor values (default
        True). False skips them (as PyMC's `compute_convergence_checks=False`), e.g. for
        many small runs in a simulation study; `post.summary()` still computes them on
        demand. The cheap per-draw checks (divergences, E-BFMI, tree depth) always run.

    >>> import ppl
    >>> from ppl.examples import EIGHT_SCHOOLS_SIGMA as sigma, EIGHT_SCHOOLS_Y as y, eight_schools
    >>> post = ppl.infer(eight_schools(sigma, y=y), method="nuts", num_chains=4, seed=0)
    >>> print(post.summary())
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((model, seed))):
        raise PPLError(
            "ppl.infer was called inside jax.jit, vmap or grad (its data or seed is traced): "
            "it runs its own compiled programs from Python, so call it outside the "
            "transformation (e.g. a Python loop over datasets)"
        )
    method = resolve(method)
    if options:
        _reject(options, method)
    model = as_bound_model(model)
    if progress is not None and not isinstance(progress, bool):
        raise OptionError(f"progress must be True, False or None (auto), got {progress!r}")
    common = {
        "num_samples": _positive_int("num_samples", num_samples),
        "num_chains": _positive_int("num_chains", num_chains),
        "seed": as_key(seed),
        "progress": progress,
    }
    if "num_warmup" in method.common_options:
        warmup = num_samples if num_warmup is None else num_warmup
        common["num_warmup"] = _positive_int("num_warmup", warmup, minimum=0)
    elif num_warmup is not None:
        raise OptionError(f"method '{method.name}' has no warmup phase; drop num_warmup")
    per_method = (
        ("chain_method", chain_method), ("checkpoint", checkpoint),
        ("convergence_checks", convergence_checks),
    )  # fmt: skip
    for name, value in per_method:
        if name not in method.common_options and value is not None:
            raise OptionError(f"method '{method.name}' does not take {name}; drop it")
    if "chain_method" in method.common_options:
        common["chain_method"] = _chain_method(chain_method, common["num_chains"])
    if "checkpoint" in method.common_options:
        common["checkpoint"] = _checkpoint_path(checkpoint)
    if "convergence_checks" in method.common_options and convergence_checks is not None:
        if not isinstance(convergence_checks, (bool, np.bool_)):
            raise OptionError(
                f"convergence_checks must be True or False, got {convergence_checks!r}"
            )
        common["convergence_checks"] = bool(convergence_checks)
    return method.run(model, **common)


def _chain_method(value, num_chains):
    value = "vectorized" if value is None else value
    if isinstance(value, str) and value in _NUMPYRO_CHAIN_METHODS:
        raise OptionError(
            f"chain_method={value!r} is NumPyro's name; in ppl use chain_method="
            f"{_NUMPYRO_CHAIN_METHODS[value]}"
        )
    if value not in CHAIN_METHODS:
        raise OptionError(
            f"chain_method must be one of {', '.join(map(repr, CHAIN_METHODS))}, got "
            f"{value!r}{did_you_mean(str(value), CHAIN_METHODS)}"
        )
    if value == "sharded":
        chain_mesh(num_chains)  # num_chains must split evenly over the devices
    return value


def _checkpoint_path(path):
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise OptionError(f"checkpoint must be a file path (str or os.PathLike), got {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise OptionError(f"checkpoint={path!r} is a directory; give a file path in it")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.isdir(existing):  # (missing folders are made when it is written)
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(
            f"checkpoint={path!r}: cannot write in {existing!r}; give a path in a writable folder"
        )
    return path


def _reject(options, method):
    name = sorted(options)[0]
    own = method.option_names()
    if name in own:
        raise OptionError(
            f"'{name}' is an option of the method, not of infer(): "
            f"pass method={_path(method)}({name}=...)"
        )
    if name in _NUMPYRO_OPTIONS:
        cls = "ppl.mcmc.NUTS" if "init" not in own else _path(method)
        raise OptionError(
            f"infer() has no option '{name}' (NumPyro's): "
            + _NUMPYRO_OPTIONS[name].format(method=cls)
        )
    valid = [o for o in _COMMON if o in method.common_options]
    raise OptionError(
        f"unknown option '{name}'{did_you_mean(name, valid + list(own))} for "
        f"infer(method='{method.name}'); infer() takes "
        f"{', '.join(valid)}; options of the method object: {', '.join(own) or 'none'}"
    )


def _path(method):
    """`ppl.mcmc.NUTS` for a NUTS object: where users find the method's class."""
    return f"ppl.{type(method).__module__.split('.')[1]}.{type(method).__name__}"
