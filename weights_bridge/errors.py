"""The bridge's exceptions: one base class, one subclass per kind of failure.

The CLI prints ``str(error)`` on one line and exits with the class's ``exit_code``.
"""


class BridgeError(Exception):
    """Base class. Messages name the file, the tensor or layer, and expected versus found."""

    exit_code = 2


class InputFileError(BridgeError):
    """The input path is missing, not a file of the expected kind, unreadable or corrupt."""

    exit_code = 3


class UnsafeInputError(BridgeError):
    """Loading the input would execute code (pickled objects, Keras Lambda layers)."""

    exit_code = 4


class WeightsMismatchError(BridgeError):
    """The tensors do not fit the architecture: missing, unexpected, wrong shape or dtype,
    non-finite values, wrong architecture or number of classes."""

    exit_code = 5


class OutputError(BridgeError):
    """The output cannot be written: it exists (without ``overwrite``) or its folder is not writable."""

    exit_code = 6


class ToleranceError(BridgeError):
    """Implementations disagree beyond the stated tolerance (``verify``)."""

    exit_code = 1


class MissingExtraError(BridgeError):
    """What was asked needs a package this environment lacks: the message names the extra of
    the package that brings it and the pip command (``extras.require``)."""

    exit_code = 2


def by_name(name):
    """The ``BridgeError`` class called ``name`` (as another process reported it), else None."""
    kind = globals().get(name or "")
    return kind if isinstance(kind, type) and issubclass(kind, BridgeError) else None
