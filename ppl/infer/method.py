"""The base of every method object that `infer()` accepts."""

import numbers

from ppl.core.logdensity import INIT_STRATEGIES
from ppl.errors import OptionError


class Method:
    """A configured inference method: `run(model, **common) -> Posterior`.

    Method-specific settings are fields of the object; the options common to all
    methods (`common_options`) arrive as keywords from `infer()`. A method that can
    sample discrete latent sites sets `handles_discrete = True`, so error messages
    can suggest it.
    """

    name = None
    common_options = ("num_samples", "num_chains", "seed", "progress")
    handles_discrete = False

    def __post_init__(self):
        cls = type(self).__name__
        for field, value in vars(self).items():
            if value is None:
                continue
            if isinstance(value, float) and value != value:
                raise OptionError(f"{cls}: {field} is NaN")
        init = getattr(self, "init", None)
        if isinstance(init, str) and init not in INIT_STRATEGIES:
            raise OptionError(
                f"{cls}: unknown init strategy {init!r}; choose one of {', '.join(INIT_STRATEGIES)}"
            )

    @property
    def label(self):
        """The registry name, or the class name of an unregistered method (e.g. a combinator)."""
        return self.name or type(self).__name__

    def option_names(self):
        return tuple(getattr(self, "__dataclass_fields__", {}))

    def run(self, model, **common):
        raise NotImplementedError


def check_option(method, field, test, requirement, integer=False):
    """Raise an OptionError unless `method.field` is a number (not bool) passing `test`."""
    value = getattr(method, field)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not test(value):
        raise OptionError(f"{type(method).__name__}: {field}={value!r} must be {requirement}")
