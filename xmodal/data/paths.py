"""Where data lives: ``--data.root``, else ``$XMODAL_DATA``, else the packaged sample."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent.parent / "sample_data"


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data root folder (holding ``fsdd/``, ``sms_spam/`` ...) or ``None`` if unset."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("XMODAL_DATA")
    if env:
        return Path(env).expanduser()
    return None


def cache_root() -> Path:
    """Cache folder for decoded inputs and downloads (``$XMODAL_CACHE``)."""
    env = os.environ.get("XMODAL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xmodal"


def inside(path: Path, root: Path) -> bool:
    """True when ``path`` resolves inside ``root`` (manifests may not escape it)."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False
