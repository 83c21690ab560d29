"""The ``glyphs`` text layout: a text as a sequence of character images.

A page of rendered text (``lines``, ``grid``) asks the backbone to *read*: to find
characters in a large image and learn what each of thousands of shapes means from a
few thousand examples. The ``glyphs`` layout renders every distinct character once
into its own ``cell_size`` square, runs the backbone on the distinct glyphs of a
batch, and lets a small trainable n-gram encoder (:class:`GlyphSequencePool`) combine
the glyph features in text order (the Glyce / glyph-embedding idea).

Why it works with little data: a character's features come from its *shape*, so two
characters that look alike get nearly the same features (Latin ``a`` and Cyrillic
``а`` render to the same pixels), and a batch costs one backbone pass per distinct
character instead of one large image per text.

Decoding yields a fixed-length ``int32`` vector of code points (``0`` pads), so the
decode cache stores 1 kB per text; :class:`GlyphAtlas` renders each code point the
first time it is seen and keeps it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.nn import functional as F

from xmodal.adapters.text_fonts import FontChain
from xmodal.adapters.text_layout import Layout, resolve_char

#: Code point that pads a decoded glyph sequence (never a character: NUL is dropped).
PAD = 0


def layout_glyphs(text: str, chain: FontChain, max_chars: int) -> tuple[list[int], Layout]:
    """Code points of a prepared ``text`` (whitespace runs -> one space), cut at ``max_chars``.

    Returns:
        The code points (characters no font has replaced by the replacement mark) and
        a :class:`Layout` carrying only ``truncated`` and ``missing``.
    """
    chars = list(" ".join(text.split()))
    out = Layout(anchor="mm", truncated=len(chars) > max_chars)
    codes = [ord(resolve_char(chain, ch, out.missing)[0]) if ch != " " else 32
             for ch in chars[:max_chars]]
    return codes, out


def render_glyph(chain: FontChain, code: int, cell: int, font_size: int,
                 foreground: int, background: int) -> np.ndarray:
    """One character centred in a ``cell`` x ``cell`` square: ``(cell, cell)`` uint8."""
    image = Image.new("L", (cell, cell), background)
    if code not in (PAD, 32):
        ch, index = resolve_char(chain, chr(code), [])
        ImageDraw.Draw(image).text((cell / 2, cell / 2), ch, fill=foreground,
                                   font=chain.face(index, font_size), anchor="mm")
    return np.asarray(image, dtype=np.uint8)


class GlyphAtlas(nn.Module):
    """Distinct code points ``(U,)`` -> normalised glyph images ``(U, 3, cell, cell)``.

    Each code point is drawn once (Pillow, on the CPU) and kept, so after the first
    epoch no glyph is drawn again. ``normalise`` turns the ``(U, 1, cell, cell)`` uint8
    glyphs into backbone input, the same module the page layouts use, and its buffers
    say which device the glyphs go to.
    """

    def __init__(self, fonts: Sequence[str], cell: int, font_size: int, foreground: int,
                 background: int, normalise: nn.Module) -> None:
        super().__init__()
        self.chain = FontChain(list(fonts))
        self.cell, self.font_size = int(cell), int(font_size)
        self.foreground, self.background = int(foreground), int(background)
        self.normalise = normalise
        self._drawn: dict[int, torch.Tensor] = {}

    def glyph(self, code: int) -> torch.Tensor:
        """The ``(cell, cell)`` uint8 image of one code point (drawn on first use)."""
        image = self._drawn.get(code)
        if image is None:
            image = torch.from_numpy(render_glyph(self.chain, code, self.cell, self.font_size,
                                                  self.foreground, self.background).copy())
            self._drawn[code] = image
        return image

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        grey = torch.stack([self.glyph(int(code)) for code in codes.tolist()]).unsqueeze(1)
        device = next(self.normalise.buffers(), codes).device
        return self.normalise(grey.to(device))


class GlyphJitter(nn.Module):
    """Training augmentation: every glyph image moves by up to ``shift`` pixels."""

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.shift = int(shift)

    def forward(self, glyphs: torch.Tensor) -> torch.Tensor:
        if self.shift <= 0:
            return glyphs
        pad = self.shift
        padded = F.pad(glyphs, (pad, pad, pad, pad), mode="replicate")
        size = glyphs.shape[-1]
        offsets = torch.randint(0, 2 * pad + 1, (glyphs.shape[0], 2)).tolist()
        return torch.stack([padded[i, :, dy:dy + size, dx:dx + size]
                            for i, (dy, dx) in enumerate(offsets)])


class GlyphSequencePool(nn.Module):
    """Per-glyph backbone features -> one vector per text.

    Glyph features are projected to ``hidden`` dimensions, looked up in text order,
    passed through 1-D convolutions of widths ``kernels`` (character n-gram
    detectors) and pooled over the text by maximum and by mean (padding excluded).
    The projection runs on the distinct glyphs, not on every position.

    Args:
        in_features: the backbone's pooled feature size.
        hidden: channels of the projection and of every convolution.
        kernels: convolution widths (n-gram lengths).
        dropout: dropout on the looked-up glyph vectors.
        glyph_dropout: in training, the fraction of character positions blanked (their
            vector zeroed, the rest left in place: "word dropout" for characters), so no
            single character decides a prediction.
        vocabulary: characters that also get a learned vector of their own, added to
            their projected glyph features (Glyce's glyph + character-ID embedding). It
            starts at zero, so training begins from the glyphs alone; a character
            outside ``vocabulary`` (one training never saw, a look-alike) keeps its
            glyph features only. ``None``: glyph features only.
        pairs: pairs of adjacent characters (concatenated, two characters each) that get
            a learned vector of their own, added at the pair's first position (fastText's
            bigram vectors), also starting at zero. ``None``: none.
        triples: the same for runs of three adjacent characters (three characters each):
            many Chinese idioms and negated words (不太好, "not too good") are three.
        gram_dropout: in training, the fraction of positions whose pair and triple vectors
            are left out (each table on its own), as a typo leaves them out: a swapped or
            dropped character breaks the pairs around it into unknown ones. Without it,
            "no pair vector here" is rare in training and the model reads it as evidence.
    """

    def __init__(self, in_features: int, hidden: int = 256, kernels: Sequence[int] = (1, 2, 3, 4),
                 dropout: float = 0.3, glyph_dropout: float = 0.0,
                 vocabulary: str | None = None, pairs: str | None = None,
                 triples: str | None = None, gram_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= glyph_dropout < 1.0:
            raise ValueError(f"glyph_dropout must be in [0, 1), not {glyph_dropout}")
        self.glyph_dropout = float(glyph_dropout)
        if not 0.0 <= gram_dropout < 1.0:
            raise ValueError(f"gram_dropout must be in [0, 1), not {gram_dropout}")
        self.gram_dropout = float(gram_dropout)
        self.norm = nn.LayerNorm(in_features)
        self.proj = nn.Linear(in_features, hidden)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, k, padding=k // 2) for k in kernels)
        self.drop = nn.Dropout(dropout)
        self.out_features = 2 * len(self.convs) * hidden
        self.char_embedding = self._gram_embedding("vocabulary_codes", vocabulary, 1, hidden)
        self.pair_embedding = self._gram_embedding("pair_keys", pairs, 2, hidden)
        self.triple_embedding = self._gram_embedding("triple_keys", triples, 3, hidden)

    def _gram_embedding(self, buffer: str, grams: str | None, n: int,
                        hidden: int) -> nn.Embedding | None:
        """A zero-initialised table for the ``n``-character runs in ``grams`` (their keys
        kept sorted in the buffer named ``buffer``); row 0 stands for unknown runs."""
        if not grams:
            return None
        if len(grams) % n:
            raise ValueError(f"a vocabulary of {n}-character runs must have a length that "
                             f"is a multiple of {n}, not {len(grams)}")
        keys = sorted({gram_key(*map(ord, grams[i:i + n])) for i in range(0, len(grams), n)})
        self.register_buffer(buffer, torch.tensor(keys, dtype=torch.long))
        table = nn.Embedding(len(keys) + 1, hidden, padding_idx=0)
        nn.init.zeros_(table.weight)
        return table

    def vocabulary_rows(self, codes: torch.Tensor) -> torch.Tensor:
        """Code points -> rows of the character embedding (0: not in the vocabulary)."""
        return _rows(self.vocabulary_codes, codes.long())

    def pair_rows(self, positions: torch.Tensor) -> torch.Tensor:
        """Code points in text order ``(B, L)`` -> rows of the pair embedding for the pair
        starting at each position (0: not a known pair, or the last character)."""
        return _rows(self.pair_keys, gram_keys(positions, 2))

    def triple_rows(self, positions: torch.Tensor) -> torch.Tensor:
        """As :meth:`pair_rows`, for the three characters starting at each position."""
        return _rows(self.triple_keys, gram_keys(positions, 3))

    def _dropped(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows of an n-gram table with ``gram_dropout`` of them set to unknown (row 0,
        the zero vector) in training."""
        if not (self.training and self.gram_dropout):
            return rows
        gone = torch.rand(rows.shape, device=rows.device) < self.gram_dropout
        return rows.masked_fill(gone, 0)

    def forward(self, glyph_features: torch.Tensor, inverse: torch.Tensor,
                mask: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """``glyph_features (U, D)`` of the distinct code points ``codes (U,)``,
        ``inverse (B, L)`` indices into them, ``mask (B, L)``."""
        vectors, keep = self.embed(glyph_features, inverse, mask, codes)
        return self.encode(vectors, keep)

    def embed(self, glyph_features: torch.Tensor, inverse: torch.Tensor, mask: torch.Tensor,
              codes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The character vectors in text order ``(B, hidden, L)`` (padding zero) and the
        mask ``(B, 1, L)``: where adversarial training perturbs the input
        (:meth:`xmodal.tasks.base.BaseTask.adversarial_loss`)."""
        table = F.gelu(self.proj(self.norm(glyph_features)))
        if self.char_embedding is not None:
            if codes is None:
                raise ValueError("a pool with a character vocabulary needs the code points")
            table = table + self.char_embedding(self.vocabulary_rows(codes))
        keep = mask.unsqueeze(1).to(table.dtype)
        vectors = table[inverse]
        if self.pair_embedding is not None or self.triple_embedding is not None:
            positions = codes[inverse]
            if self.pair_embedding is not None:
                vectors = vectors + self.pair_embedding(self._dropped(self.pair_rows(positions)))
            if self.triple_embedding is not None:
                vectors = vectors + self.triple_embedding(self._dropped(self.triple_rows(positions)))
        # padding is zero, as the convolutions' own padding is: a text's vector does not
        # depend on how far its batch was padded (split_codes cuts at the longest text)
        return self.drop(vectors).transpose(1, 2) * keep, keep

    def encode(self, vectors: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Character vectors ``(B, hidden, L)``, zero at padding (as :meth:`embed` gives
        them) -> one vector per text ``(B, out_features)``."""
        x = vectors
        if self.training and self.glyph_dropout:
            blank = torch.rand((x.shape[0], x.shape[2]), device=x.device) < self.glyph_dropout
            x = x.masked_fill(blank.unsqueeze(1), 0.0)
        count = keep.sum(-1).clamp(min=1.0)
        length = x.shape[-1]
        pooled = []
        for conv in self.convs:
            y = F.gelu(conv(x))[..., :length]
            pooled.append((y * keep - (1.0 - keep) * 1e4).amax(-1))
            pooled.append((y * keep).sum(-1) / count)
        return torch.cat(pooled, dim=1)


def gram_key(*codes: Any) -> Any:
    """One integer per run of up to three code points (code points are below 2**21)."""
    key = codes[0]
    for code in codes[1:]:
        key = key * (1 << 21) + code
    return key


def gram_keys(positions: torch.Tensor, n: int) -> torch.Tensor:
    """Code points in text order ``(B, L)`` -> the key of the ``n`` characters starting at
    each position; runs that reach past the end take padding, which no known run has."""
    positions = positions.long()
    following = [F.pad(positions[:, i:], (0, i), value=PAD) for i in range(1, n)]
    return gram_key(positions, *following)


def _rows(known: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Sorted ``known`` keys -> 1-based rows of ``keys`` among them, 0 where absent."""
    index = torch.searchsorted(known, keys).clamp(max=len(known) - 1)
    return torch.where(known[index] == keys, index + 1, torch.zeros_like(index))


def typo_noise(codes: torch.Tensor, rate: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Decoded glyph sequences ``(B, L)`` with typos: each character is dropped with
    probability ``rate / 2`` or swapped with the next with probability ``rate / 2``.

    Why: glyph dropout blanks a position but keeps every other character where it was;
    real typos also shift the text (a dropped character) and break the pairs and triples
    a character takes part in (a swap), so the n-gram vectors learn to do without them.
    The first character is never dropped, so no text becomes empty; dropped characters
    become padding at the end.
    """
    if rate <= 0 or codes.numel() == 0:
        return codes
    batch, length = codes.shape
    real = codes != PAD
    lengths = real.sum(dim=1, keepdim=True)
    index = torch.arange(length, device=codes.device).expand(batch, length)
    draw = torch.rand((batch, length), generator=generator, device=codes.device)
    drop = real & (draw < rate / 2) & (index > 0)
    swap = real & ~drop & (draw >= rate / 2) & (draw < rate) & (index + 1 < lengths)
    # each position's place in the new order: a swapped one goes after its right
    # neighbour, dropped ones and padding go to the end (in their old order)
    place = index.to(torch.float32) + 1.5 * swap
    place = torch.where(drop | ~real, place + 2 * length, place)
    order = place.argsort(dim=1, stable=True)
    return codes.masked_fill(drop, PAD).gather(1, order)


def split_codes(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A decoded batch ``(B, L)`` -> distinct code points, their index per position, mask.

    Positions after the batch's longest text are cut off (decoding pads at the end).
    """
    codes = codes.long()
    mask = codes != PAD
    longest = max(int(mask.sum(dim=1).max()) if codes.numel() else 0, 1)
    codes, mask = codes[:, :longest], mask[:, :longest]
    distinct, inverse = torch.unique(codes, return_inverse=True)
    return distinct, inverse, mask
