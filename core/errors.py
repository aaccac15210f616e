"""Exceptions of the modules that need torch or numpy, defined apart so that catching them imports neither."""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or does not match the model it describes."""


class DeviceUnavailableError(RuntimeError):
    """The requested accelerator is not present on this machine."""


class PlotError(Exception):
    """The plot cannot be written where asked; the message names the problem."""
