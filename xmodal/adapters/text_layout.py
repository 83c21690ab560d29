"""Lay text out on a fixed-size canvas: where each run of characters goes, in which font.

Two layouts:

* ``grid``: one character per square cell, row-major (Super Characters); best for
  CJK, where every character is a word-like unit of similar width.
* ``lines``: greedy word wrap of proportional text (Latin, Cyrillic, Greek); wide
  (CJK) characters may break anywhere, over-long words break by character.

Layout is pure (no pixels), so the data module can count truncated texts and missing
glyphs in the main process without rendering, while rendering runs in workers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from xmodal.adapters.text_fonts import REPLACEMENT, FontChain

#: Invisible code points removed before layout (variation selectors, BOM).
_INVISIBLE = re.compile("[\ufe00-\ufe0f\ufeff\u200b-\u200f\u2060-\u2064]")


@dataclass
class Layout:
    """Runs to draw and what did not make it onto the canvas.

    Attributes:
        runs: ``(x, y, text, font_index)``; ``y`` is the baseline (``lines``) or the
            cell centre (``grid``), see ``anchor``.
        anchor: Pillow text anchor for every run.
        truncated: some characters did not fit (or were past ``max_chars``).
        missing: characters no font has (drawn as a replacement mark).
    """

    runs: list[tuple[float, float, str, int]] = field(default_factory=list)
    anchor: str = "ls"
    truncated: bool = False
    missing: list[str] = field(default_factory=list)


def prepare_text(text: str, form: str = "NFC") -> str:
    """Unicode-normalise and drop control/format characters; keep newlines.

    Tabs become spaces, ``\\r\\n`` and ``\\r`` become ``\\n``.
    """
    text = unicodedata.normalize(form, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _INVISIBLE.sub("", text)
    return "".join(
        ch for ch in text
        if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )


def resolve_char(chain: FontChain, ch: str, missing: list[str]) -> tuple[str, int]:
    """The character to draw and its font; a replacement mark when no font has it."""
    index = chain.font_index(ch)
    if index >= 0:
        return ch, index
    missing.append(ch)
    for mark in (REPLACEMENT, "?"):
        index = chain.font_index(mark)
        if index >= 0:
            return mark, index
    return "?", 0


def layout_grid(text: str, chain: FontChain, height: int, width: int, cell: int,
                max_chars: int | None = None, dx: int = 0, dy: int = 0) -> Layout:
    """One character per ``cell``-pixel square, row-major; whitespace runs become one cell."""
    chars = list(" ".join(text.split()))
    cols, rows = max(1, width // cell), max(1, height // cell)
    limit = rows * cols if max_chars is None else min(rows * cols, max_chars)
    out = Layout(anchor="mm", truncated=len(chars) > limit)
    for position, ch in enumerate(chars[:limit]):
        if ch == " ":
            continue
        ch, index = resolve_char(chain, ch, out.missing)
        row, col = divmod(position, cols)
        out.runs.append((col * cell + cell / 2 + dx, row * cell + cell / 2 + dy, ch, index))
    return out


def _tokens(text: str) -> list[str]:
    """Words, single wide (CJK) characters, ``" "`` and ``"\\n"`` separators."""
    tokens: list[str] = []
    word: list[str] = []
    for ch in text:
        if ch == "\n" or ch.isspace() or unicodedata.east_asian_width(ch) in ("W", "F"):
            if word:
                tokens.append("".join(word))
                word = []
            tokens.append("\n" if ch == "\n" else " " if ch.isspace() else ch)
        else:
            word.append(ch)
    if word:
        tokens.append("".join(word))
    return tokens


def layout_lines(text: str, chain: FontChain, height: int, width: int, font_size: int,
                 line_spacing: float = 1.2, margin: int = 2, max_chars: int | None = None,
                 dx: int = 0, dy: int = 0) -> Layout:
    """Greedy word wrap into as many lines as fit the canvas height."""
    line_height = max(1, round(font_size * line_spacing))
    n_lines = max(1, (height - 2 * margin) // line_height)
    usable = max(1, width - 2 * margin)
    # No glyph is narrower than 2 px, so more characters than this can never fit:
    # cutting here keeps a 100 kB text as cheap as a short one.
    limit = n_lines * max(1, usable // 2)
    if max_chars is not None:
        limit = min(limit, max_chars)
    out = Layout(anchor="ls", truncated=len(text) > limit)
    text = text[:limit]
    ascent = min(line_height, chain.face(0, font_size).getmetrics()[0])
    space_font = max(0, chain.font_index(" "))
    space = chain.width(" ", space_font, font_size)
    lines: list[list[tuple[float, str, int, float]]] = [[]]
    x, pending_space = 0.0, False

    def newline() -> bool:
        nonlocal x, pending_space
        x, pending_space = 0.0, False
        lines.append([])
        return len(lines) <= n_lines

    for token in _tokens(text):
        if token == "\n":
            if not newline():
                break
            continue
        if token == " ":
            pending_space = bool(lines[-1])
            continue
        glyphs = []
        for ch in token:
            ch, index = resolve_char(chain, ch, out.missing)
            glyphs.append((ch, index, chain.width(ch, index, font_size)))
        word_width = sum(g[2] for g in glyphs)
        gap = space if pending_space else 0.0
        if x + gap + word_width > usable and lines[-1] and word_width <= usable:
            if not newline():
                break
            gap = 0.0
        if gap:  # a drawn space lets the words around it share one run
            lines[-1].append((x, " ", space_font, gap))
        x += gap
        pending_space = False
        for ch, index, advance in glyphs:
            if x + advance > usable and lines[-1]:
                if not newline():
                    break
            lines[-1].append((x, ch, index, advance))
            x += advance
        if len(lines) > n_lines:
            break
    if len(lines) > n_lines:
        out.truncated = True
        lines = lines[:n_lines]
    for number, placed in enumerate(lines):
        baseline = margin + number * line_height + ascent + dy
        run_x, run_text, run_font, end = 0.0, "", -1, -1.0
        for x_pos, ch, index, advance in placed:
            if index == run_font and abs(x_pos - end) < 1e-6:
                run_text += ch
            else:
                if run_text:
                    out.runs.append((margin + run_x + dx, baseline, run_text, run_font))
                run_x, run_text, run_font = x_pos, ch, index
            end = x_pos + advance
        if run_text:
            out.runs.append((margin + run_x + dx, baseline, run_text, run_font))
    return out
