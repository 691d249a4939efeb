"""The base of every method object that `infer()` accepts."""

import inspect
import numbers

import numpy as np

from ppl.core.checks import did_you_mean, plain_scalars
from ppl.core.logdensity import as_init
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

    def __new__(cls, *args, **kwargs):
        """Arguments that the constructor would refuse with a bare TypeError (a misspelt
        option, too many positional ones) become an OptionError listing the options.
        (`__new__` sees the constructor's arguments, also for dataclasses.)"""
        if args or kwargs:  # none when copy/pickle recreate an object
            _check_arguments(cls, args, kwargs)
        return super().__new__(cls)

    def __post_init__(self):
        cls = type(self).__name__
        plain_scalars(self)
        flags = {
            f.name
            for f in getattr(self, "__dataclass_fields__", {}).values()
            if f.type in (bool, "bool")
        }
        for field, value in vars(self).items():
            if value is None:
                continue
            if isinstance(value, float) and value != value:
                raise OptionError(f"{cls}: {field} is NaN")
            if field in flags and not isinstance(value, (bool, np.bool_)):
                raise OptionError(f"{cls}: {field}={value!r} must be True or False")
        if "init" in getattr(self, "__dataclass_fields__", {}):  # a dict becomes InitValues
            object.__setattr__(self, "init", as_init(self.init, cls))

    @property
    def label(self):
        """The registry name, or the class name of an unregistered method (e.g. a combinator)."""
        return self.name or type(self).__name__

    def option_names(self):
        return tuple(getattr(self, "__dataclass_fields__", {}))

    def run(self, model, **common):
        raise NotImplementedError


def _check_arguments(cls, args, kwargs):
    signature = inspect.signature(cls.__init__)
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as e:
        names = [
            name
            for name, p in list(signature.parameters.items())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            problem = f"unknown option '{unknown[0]}'{did_you_mean(unknown[0], names)}"
        else:  # too many positional arguments, or a required one missing
            problem = f"{e}; give options by keyword" if args else str(e)
        raise OptionError(f"{cls.__name__}: {problem}; options are {', '.join(names)}") from None


def check_option(method, field, test, requirement, integer=False):
    """Raise an OptionError unless `method.field` is a number (not bool) passing `test`."""
    value = getattr(method, field)
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not test(value):
        raise OptionError(f"{type(method).__name__}: {field}={value!r} must be {requirement}")
