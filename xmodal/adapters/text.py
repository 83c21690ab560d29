"""Text -> rendered character image (Super Characters / CLIPPO / PIXEL).

Rendering (Pillow + FreeType) is the hot path and runs on the CPU in DataLoader
workers; its output is a fixed-shape ``uint8`` image, so the data module's
memory-mapped decode cache keeps every rendered text (keyed by the text's hash and
these settings) and later epochs and runs never render again. On the device the
grey image is scaled, expanded to 3 channels and normalised with the backbone's own
mean and std.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from xmodal.adapters.base import ModalityAdapter
from xmodal.adapters.text_fonts import DEFAULT_FONTS, FontChain
from xmodal.adapters.text_glyphs import GlyphAtlas, GlyphJitter, layout_glyphs, render_glyph
from xmodal.adapters.text_layout import Layout, layout_grid, layout_lines, prepare_text
from xmodal.errors import BadInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TextAdapter(ModalityAdapter):
    """Texts rendered to fixed-size grey images of characters.

    Args:
        layout: ``lines`` (word-wrapped proportional text, for Latin, Cyrillic and
            Greek), ``grid`` (one character per square cell, for CJK) or ``glyphs``
            (the text as a sequence of character images, each ``cell_size`` square,
            encoded one distinct character at a time: :mod:`xmodal.adapters.text_glyphs`).
            ``image_size`` does not apply to ``glyphs``.
        image_size: ``[height, width]`` of the rendered image in pixels.
        font_size: glyph size in pixels.
        cell_size: side of a ``grid`` cell in pixels (``font_size`` should be a bit
            smaller so neighbours do not touch).
        line_spacing: ``lines`` line height as a multiple of ``font_size``.
        margin: ``lines`` blank border in pixels.
        max_chars: draw at most this many characters (``None``: as many as fit;
            for ``glyphs``: 256). Texts cut here or by the canvas are counted as
            truncated.
        fonts: fonts in fallback order: file paths, the packaged ``DejaVu Sans`` /
            ``Noto Sans CJK SC``, or fontconfig family names. Each character uses the
            first font that has it; characters none has are counted and warned about.
        foreground: grey level (0-255) of the characters.
        background: grey level (0-255) of the canvas.
        invert: swap ``foreground`` and ``background``.
        unicode_form: Unicode normalisation applied first (``NFC``; ``NFKC`` also
            folds full-width and compatibility forms).
        augment: jitter renders of training texts (font size, position, font; for
            ``glyphs``: every glyph's position, on the device).
        size_jitter: training font size varies by up to this many pixels.
        shift_jitter: training text moves by up to this many pixels in x and y.
        train_fonts: extra fonts (paths or names); in training each text is drawn
            with a random one of ``fonts[0]`` and these as its first font.
    """

    name = "text"
    default_dataset = "sms_spam"
    fixed_shape = True
    decode_varies_in_training = True  # per instance: False when ``augment`` is off

    def __init__(
        self,
        layout: Literal["lines", "grid", "glyphs"] = "lines",
        image_size: list[int] = (64, 256),
        font_size: int = 12,
        cell_size: int = 16,
        line_spacing: float = 1.2,
        margin: int = 2,
        max_chars: int | None = None,
        fonts: list[str] | None = None,
        foreground: int = 0,
        background: int = 255,
        invert: bool = False,
        unicode_form: Literal["NFC", "NFKC"] = "NFC",
        augment: bool = True,
        size_jitter: int = 1,
        shift_jitter: int = 2,
        train_fonts: list[str] | None = None,
    ) -> None:
        super().__init__()
        if layout not in ("lines", "grid", "glyphs"):
            raise ValueError(f"layout must be lines, grid or glyphs, not {layout!r}")
        image_size = list(image_size)
        if len(image_size) != 2 or min(image_size) < 8:
            raise ValueError(f"image_size must be [height, width], each >= 8, not {image_size}")
        if font_size < 4 or cell_size < 4:
            raise ValueError("font_size and cell_size must be at least 4 pixels")
        if not (0 <= foreground <= 255 and 0 <= background <= 255):
            raise ValueError("foreground and background are grey levels 0..255")
        if unicode_form not in ("NFC", "NFKC"):
            raise ValueError(f"unicode_form must be NFC or NFKC, not {unicode_form!r}")
        if max_chars is not None and max_chars < 1:
            raise ValueError("max_chars must be positive (or None)")
        self.layout = layout
        self.image_size = [int(v) for v in image_size]
        self.font_size = int(font_size)
        self.cell_size = int(cell_size)
        self.line_spacing = float(line_spacing)
        self.margin = int(margin)
        self.max_chars = max_chars
        self.fonts = list(fonts) if fonts else list(DEFAULT_FONTS)
        self.foreground = int(foreground)
        self.background = int(background)
        self.invert = bool(invert)
        self.unicode_form = unicode_form
        self.augment = bool(augment)
        self.size_jitter = int(size_jitter)
        self.shift_jitter = int(shift_jitter)
        self.train_fonts = list(train_fonts) if train_fonts else None
        self.chain = FontChain(self.fonts)
        self._train_chains = [self.chain] + [
            FontChain([font, *self.fonts]) for font in (self.train_fonts or [])
        ]
        #: ``glyphs``: decoded samples are code-point sequences, not images (the task
        #: encodes them with :class:`~xmodal.adapters.text_glyphs.GlyphSequencePool`).
        self.sequence_input = layout == "glyphs"
        self.decode_varies_in_training = not self.sequence_input and self.augment and bool(
            self.size_jitter or self.shift_jitter or self.train_fonts
        )

    @property
    def ink(self) -> tuple[int, int]:
        """``(foreground, background)`` grey levels as drawn (after ``invert``)."""
        if self.invert:
            return self.background, self.foreground
        return self.foreground, self.background

    @property
    def sequence_length(self) -> int:
        """``glyphs``: characters per decoded text (``max_chars``, default 256)."""
        return self.max_chars or 256

    # -- layout and rendering ------------------------------------------------------------

    def text_of(self, source: Any) -> str:
        """The prepared text of a source (``str`` or UTF-8 ``bytes``); bad ones raise."""
        if isinstance(source, bytes):
            try:
                source = source.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInputError(repr(source[:40]), f"invalid UTF-8 at byte {exc.start}",
                                    self.name) from None
        if not isinstance(source, str):
            raise BadInputError(repr(source)[:60], f"expected a text, got {type(source).__name__}",
                                self.name)
        text = prepare_text(source, self.unicode_form).strip()
        if not text:
            raise BadInputError(repr(source[:40]), "empty or whitespace-only text", self.name)
        return text

    def lay_out(self, text: str, chain: FontChain | None = None, size_delta: int = 0,
                dx: int = 0, dy: int = 0) -> Layout:
        """Where every character of a prepared ``text`` goes (no pixels)."""
        chain = chain or self.chain
        height, width = self.image_size
        size = max(4, self.font_size + size_delta)
        if self.layout == "glyphs":
            return layout_glyphs(text, chain, self.sequence_length)[1]
        if self.layout == "grid":
            return layout_grid(text, chain, height, width, self.cell_size, self.max_chars, dx, dy)
        return layout_lines(text, chain, height, width, size, self.line_spacing, self.margin,
                            self.max_chars, dx, dy)

    def render(self, text: str, chain: FontChain | None = None, size_delta: int = 0,
               dx: int = 0, dy: int = 0) -> np.ndarray:
        """Draw a prepared text: ``(height, width)`` uint8 (``glyphs``: its glyph images
        side by side, 16 per row, as the backbone sees them one by one)."""
        chain = chain or self.chain
        if self.layout == "glyphs":
            return self.render_glyphs(layout_glyphs(text, chain, self.sequence_length)[0], chain)
        placed = self.lay_out(text, chain, size_delta, dx, dy)
        foreground, background = self.ink
        height, width = self.image_size
        image = Image.new("L", (width, height), background)
        draw = ImageDraw.Draw(image)
        size = max(4, self.font_size + size_delta)
        for x, y, run, index in placed.runs:
            draw.text((x, y), run, fill=foreground, font=chain.face(index, size),
                      anchor=placed.anchor)
        return np.asarray(image, dtype=np.uint8)

    def render_glyphs(self, codes: Sequence[int], chain: FontChain | None = None,
                      per_row: int = 16) -> np.ndarray:
        """Glyph images of ``codes`` tiled ``per_row`` to a row (for previews)."""
        chain = chain or self.chain
        foreground, background = self.ink
        cell = self.cell_size
        rows = max(1, -(-len(codes) // per_row))
        page = np.full((rows * cell, per_row * cell), background, dtype=np.uint8)
        for position, code in enumerate(codes):
            row, col = divmod(position, per_row)
            page[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = render_glyph(
                chain, code, cell, self.font_size, foreground, background)
        return page

    # -- the adapter contract ------------------------------------------------------------

    def decode(self, source: Any) -> torch.Tensor:
        """Render one text with the fixed settings: ``(1, H, W)`` uint8 (deterministic);
        ``glyphs``: its code points, ``(max_chars,)`` int32 padded with 0."""
        if self.sequence_input:
            codes = layout_glyphs(self.text_of(source), self.chain, self.sequence_length)[0]
            out = torch.zeros(self.sequence_length, dtype=torch.int32)
            out[:len(codes)] = torch.tensor(codes, dtype=torch.int32)
            return out
        return torch.from_numpy(self.render(self.text_of(source)).copy()).unsqueeze(0)

    def decode_train(self, source: Any) -> torch.Tensor:
        """Render with training jitter: font size, position and (optionally) font.

        Random draws come from torch's generator, which Lightning seeds and DataLoader
        workers fork per worker, so a seeded run is reproducible.
        """
        if not self.decode_varies_in_training:
            return self.decode(source)
        text = self.text_of(source)
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        rng = random.Random(seed)
        chain = rng.choice(self._train_chains)
        size_delta = rng.randint(-self.size_jitter, self.size_jitter)
        dx = rng.randint(-self.shift_jitter, self.shift_jitter)
        dy = rng.randint(-self.shift_jitter, self.shift_jitter)
        return torch.from_numpy(self.render(text, chain, size_delta, dx, dy).copy()).unsqueeze(0)

    def device_transform(self, data_config: dict[str, Any]) -> nn.Module:
        mean = data_config.get("mean", IMAGENET_MEAN)
        std = data_config.get("std", IMAGENET_STD)
        if self.sequence_input:
            return GlyphAtlas(self.fonts, self.cell_size, self.font_size, *self.ink,
                              normalise=RenderedTextImage(mean, std))
        return RenderedTextImage(mean, std)

    def train_augment(self) -> nn.Module | None:
        """``glyphs``: every glyph image shifts by up to ``shift_jitter`` pixels."""
        if self.sequence_input and self.augment and self.shift_jitter:
            return GlyphJitter(self.shift_jitter)
        return None

    # -- reports -------------------------------------------------------------------------

    def render_stats(self, sources: Sequence[Any]) -> "RenderStats":
        """Count truncated texts and characters no font has, without drawing."""
        stats = RenderStats(total=len(sources))
        if self.sequence_input:
            stats.hint = f"glyphs: longer than max_chars={self.sequence_length}"
        for source in sources:
            try:
                placed = self.lay_out(self.text_of(source))
            except BadInputError:
                continue
            stats.truncated += placed.truncated
            if placed.missing:
                stats.with_missing += 1
                stats.missing.update(placed.missing)
        return stats

    def input_report(self, sources: Sequence[Any]) -> str | None:
        """One line on truncated texts and missing glyphs; warns when glyphs are missing."""
        stats = self.render_stats(sources)
        if stats.with_missing:
            warnings.warn(f"text: {stats.describe_missing()}", stacklevel=2)
        return stats.describe() or None

    def preview(self, source: Any, path: str | Path, data_config: dict[str, Any] | None = None) -> Path:
        """Write the rendered text (before normalisation) as a PNG; report cuts and gaps."""
        note = self.input_report([source])
        if note:
            print(f"xmodal preview: {note}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.render(self.text_of(source))).save(path)
        return path


class RenderedTextImage(nn.Module):
    """``(B, 1, H, W)`` uint8 renders -> ``(B, 3, H, W)`` floats normalised for the backbone."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        grey = images.float() / 255.0
        rgb = grey.expand(-1, self.mean.shape[1], -1, -1)
        return (rgb - self.mean) / self.std


class RenderStats:
    """Truncation and missing-glyph counts over a set of texts."""

    def __init__(self, total: int = 0,
                 hint: str = "raise image_size or lower font_size/cell_size") -> None:
        self.total = total
        self.hint = hint
        self.truncated = 0
        self.with_missing = 0
        self.missing: Counter[str] = Counter()

    def describe_missing(self) -> str:
        shown = ", ".join(f"{ch!r} U+{ord(ch):04X} ({n}x)" for ch, n in self.missing.most_common(8))
        more = "" if len(self.missing) <= 8 else f" and {len(self.missing) - 8} more"
        return (f"{self.with_missing} of {self.total} texts have characters no font has, "
                f"drawn as a replacement mark: {shown}{more}; add a font that has them with "
                f"--data.adapter.fonts")

    def describe(self) -> str:
        parts = []
        if self.truncated:
            parts.append(f"{self.truncated} of {self.total} texts truncated ({self.hint})")
        if self.with_missing:
            parts.append(self.describe_missing())
        return "; ".join(parts)
