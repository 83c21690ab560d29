"""Exceptions that carry a message meant for the user, never a library traceback."""

from __future__ import annotations


class XModalError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _recent[0] = self  # jsonargparse re-wraps errors raised while instantiating classes


_recent: list[XModalError | None] = [None]


def unwrap(exc: BaseException) -> XModalError | None:
    """The XModalError another library wrapped into ``exc`` (by message), if any."""
    inner = _recent[0]
    if inner is not None and inner is not exc and str(inner) and str(inner) in str(exc):
        return inner
    return None


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

    def __init__(self, source: object, reason: str = "", modality: str = "") -> None:
        self.source = str(source)
        self.reason = reason
        self.modality = modality
        if not reason:  # rebuilt from one message (DataLoader workers re-raise that way)
            super().__init__(_last_line(self.source))
            return
        where = f" ({modality})" if modality else ""
        super().__init__(f"{self.source}{where}: {reason}")

    def __reduce__(self) -> tuple:
        # keep all three fields across process boundaries (DataLoader workers pickle results)
        return (type(self), (self.source, self.reason, self.modality))


def _last_line(message: str) -> str:
    """The error line of a worker's 'Original Traceback' dump, or the message itself."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in message:
        last = lines[-1]
        return last.split(": ", 1)[1] if last.startswith("xmodal.errors.") and ": " in last else last
    return message


class DownloadError(XModalError):
    """A download failed, was corrupt, or is impossible offline."""
