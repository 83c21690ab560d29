"""The modality adapter contract, split for speed.

``decode`` runs per sample on the CPU inside DataLoader workers (file -> tensor) and
must be deterministic, so its output can be cached on disk. ``device_transform``
returns a module that turns a *batch* of decoded samples into a normalised image
batch on the training device (GPU when present), and ``train_augment`` an optional
batched augmentation applied in training only. ``preview`` writes what the network
sees as a PNG.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from xmodal.errors import ConfigError


class ModalityAdapter:
    """Base class of every modality adapter (built-in or third-party).

    Subclasses declare their settings as keyword arguments of ``__init__`` with type
    hints and defaults and call ``super().__init__()`` first. ``name`` is the modality
    name used by ``--modality``; ``default_dataset`` is what ``xmodal fit --modality
    NAME`` trains on without further options.
    """

    name: ClassVar[str] = ""
    default_dataset: ClassVar[str | None] = None
    #: True when ``decode`` returns the same shape for every input, so decoded
    #: samples can live in one memory-mapped array (the decode cache).
    fixed_shape: ClassVar[bool] = True
    #: True when training decodes differently from evaluation (random crops, jitter):
    #: the training split is then decoded on every access instead of cached.
    decode_varies_in_training: ClassVar[bool] = False
    #: True when a decoded sample is a sequence of glyph codes rather than an image
    #: (the text adapter's ``glyphs`` layout): ``device_transform`` then maps the
    #: batch's distinct codes to images and the task pools their features per sample.
    sequence_input: ClassVar[bool] = False

    def __init__(self) -> None:
        self.bad_file_hints: list[str] = []

    # -- settings ---------------------------------------------------------------------

    @classmethod
    def settings_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in params if p.name != "self" and p.kind in named]

    def config(self) -> dict[str, Any]:
        """The settings that rebuild this adapter: ``{"modality": name, **settings}``."""
        settings = {name: _plain(getattr(self, name)) for name in self.settings_names()}
        return {"modality": self.name, **settings}

    def cache_key(self) -> str:
        """Hash of everything that changes ``decode``'s output (for the decode cache)."""
        text = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- the contract -----------------------------------------------------------------

    def decode(self, source: Any) -> torch.Tensor:
        """Read one input on the CPU. Raise :class:`BadInputError` for unusable input."""
        raise NotImplementedError

    def decode_train(self, source: Any) -> torch.Tensor:
        """Decode with CPU-side training augmentation (default: same as ``decode``)."""
        return self.decode(source)

    def device_transform(self, data_config: dict[str, Any]) -> nn.Module:
        """Module mapping a decoded batch to a ``(B, 3, H, W)`` float image batch.

        Args:
            data_config: the backbone's timm data config (``mean``, ``std``,
                ``input_size``, ``interpolation``), for adapters that need it.
        """
        raise NotImplementedError

    def train_augment(self) -> nn.Module | None:
        """Optional batched augmentation run on the device in training only."""
        return None

    def input_report(self, sources: list[Any]) -> str | None:
        """Optional one-line note on a split's inputs, printed after its scan.

        For facts decoding in workers cannot report back, e.g. how many texts were
        truncated to fit the image. ``None``: nothing to say.
        """
        return None

    def preview(self, source: Any, path: str | Path, data_config: dict[str, Any] | None = None) -> Path:
        """Write the image the network sees for ``source`` as a PNG and return its path."""
        from PIL import Image

        decoded = self.decode(source).unsqueeze(0)
        with torch.no_grad():
            image = self.device_transform(data_config or {})(decoded)[0]
        array = image.float().numpy()
        if array.shape[0] == 3 and not getattr(self, "preview_first_channel", False):
            array = np.moveaxis(array, 0, -1)
        else:
            array = array[0]
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low + 1e-8) * 255.0
        if scaled.ndim == 2:
            scaled = scaled[::-1]  # low frequencies at the bottom, as people read spectrograms
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(scaled).astype(np.uint8)).save(path)
        return path


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def create_adapter(config: dict[str, Any] | str, **overrides: Any) -> ModalityAdapter:
    """Build an adapter from ``{"modality": name, **settings}`` via the plugin registry.

    Only registered adapters can be built, so a config or checkpoint never names an
    arbitrary class to import.
    """
    from xmodal import plugins

    if isinstance(config, str):
        config = {"modality": config}
    settings = {**config, **overrides}
    name = settings.pop("modality", None)
    if not name:
        raise ConfigError("adapter config needs a 'modality' (one of: "
                          + ", ".join(plugins.modalities().names()) + ")")
    try:
        cls = plugins.modalities().get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    known = cls.settings_names()
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown {name} adapter setting(s) {', '.join(unknown)}; valid: {', '.join(known)}"
        )
    try:
        return cls(**settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} adapter: {exc}") from None
