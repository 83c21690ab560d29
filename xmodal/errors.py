"""Exceptions that carry a message meant for the user, never a library traceback."""

from __future__ import annotations


class XModalError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class PluginError(XModalError):
    """A plugin could not be loaded or registered something invalid."""


class ConfigError(XModalError):
    """A configuration value is wrong (unknown key, bad value)."""


class WeightsUnavailable(XModalError):
    """Pretrained weights were asked for but cannot be had (offline, missing file)."""


class BadInputError(XModalError):
    """One input (file, text row, series) cannot be used.

    Attributes:
        source: the file path or row identifier.
        modality: the adapter that tried to read it.
        reason: why, in words.
    """

    def __init__(self, source: object, reason: str, modality: str = "") -> None:
        self.source = str(source)
        self.reason = reason
        self.modality = modality
        where = f" ({modality})" if modality else ""
        super().__init__(f"{self.source}{where}: {reason}")


class DownloadError(XModalError):
    """A download failed, was corrupt, or is impossible offline."""
