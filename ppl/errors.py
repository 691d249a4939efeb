"""Exceptions raised by ppl: one base class, each message says what to fix."""

import os
import sys
import warnings


class PPLError(Exception):
    """Base class of every error ppl raises on purpose."""


class ModelError(PPLError, ValueError):
    """The model itself is at fault: a site, its name or its distribution."""


class DataError(PPLError, ValueError):
    """Observed data is at fault: its shape or its values."""


class OptionError(PPLError, ValueError):
    """A method name or an option given to `infer()` or a method is at fault."""


class InferenceError(PPLError, RuntimeError):
    """Inference failed numerically (non-finite density, degenerate weights...)."""


class CheckpointError(PPLError, ValueError):
    """A checkpoint file that cannot be resumed: corrupt, truncated, or from another run."""


class SiteError(PPLError, KeyError):
    """A site name the posterior (or model) does not have."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0])


class SamplingWarning(UserWarning):
    """A sampler's diagnostics look wrong (divergences, R-hat, low ESS, E-BFMI...)."""


_INSIDE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # .../ppl/


def warn(message):
    """Warn with a `SamplingWarning`, attributed to the first caller outside the `ppl`
    package (the user's `ppl.infer` line) however deep inside ppl the check runs."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INSIDE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, SamplingWarning, stacklevel=level)
