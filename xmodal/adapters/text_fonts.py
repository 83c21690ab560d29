"""Fonts for rendering text: packaged fonts, user fonts, and per-character fallback.

A :class:`FontChain` is an ordered list of font files. Each character is drawn with
the first font whose character map has it (read once per file with fontTools), so
Latin, Cyrillic and Greek come from DejaVu Sans and Chinese from the packaged Noto
Sans CJK SC subset. Characters no font covers are *reported*, never drawn silently as
empty boxes.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from PIL import ImageFont

from xmodal.errors import ConfigError

PACKAGED_FONTS = Path(__file__).resolve().parent.parent / "fonts"
#: Names users may give for the packaged fonts (family name, file name, short name).
PACKAGED_ALIASES = {
    "dejavu sans": "DejaVuSans.ttf",
    "dejavusans": "DejaVuSans.ttf",
    "dejavusans.ttf": "DejaVuSans.ttf",
    "noto sans cjk sc": "NotoSansCJKsc-Regular-GB2312.otf",
    "notosanscjksc": "NotoSansCJKsc-Regular-GB2312.otf",
    "notosanscjksc-regular-gb2312.otf": "NotoSansCJKsc-Regular-GB2312.otf",
}
DEFAULT_FONTS = ("DejaVu Sans", "Noto Sans CJK SC")
#: Drawn in place of a character no font has (when it is itself covered).
REPLACEMENT = "\ufffd"


def resolve_font(spec: str) -> Path:
    """A font file for ``spec``: a path, a packaged font name, or a system family name.

    System families are looked up with fontconfig's ``fc-match`` when it exists; a
    family fontconfig does not know is an error rather than a silent substitute.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    alias = PACKAGED_ALIASES.get(spec.strip().lower())
    if alias is not None:
        return PACKAGED_FONTS / alias
    if shutil.which("fc-match"):
        try:
            found = subprocess.run(
                ["fc-match", "--format", "%{family}\n%{file}", spec],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            found = []
        if len(found) == 2 and spec.lower() in found[0].lower() and Path(found[1]).is_file():
            return Path(found[1])
    raise ConfigError(
        f"font {spec!r} not found: give a .ttf/.otf/.ttc path, a packaged font "
        f"({', '.join(DEFAULT_FONTS)}) or a family fontconfig knows (fc-list)"
    )


@functools.lru_cache(maxsize=64)
def coverage(path: str) -> frozenset[int]:
    """Code points a font file maps to glyphs (first font of a collection)."""
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(path, fontNumber=0, lazy=True) if path.lower().endswith((".ttc", ".otc")) \
            else TTFont(path, lazy=True)
        cmap = font.getBestCmap() or {}
    except Exception as exc:  # fontTools raises many types for broken files
        raise ConfigError(f"cannot read font {path}: {type(exc).__name__}: {exc}") from None
    return frozenset(cmap)


class FontChain:
    """Fonts in fallback order, with per-size FreeType objects made on demand.

    Args:
        specs: font paths or names, first = preferred.
    """

    def __init__(self, specs: list[str] | tuple[str, ...]) -> None:
        if not specs:
            raise ConfigError("fonts: give at least one font")
        self.paths = [str(resolve_font(spec)) for spec in specs]
        self.cover = [coverage(path) for path in self.paths]
        self._faces: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
        self._which: dict[str, int] = {}
        self._widths: dict[tuple[str, int, int], float] = {}

    def __getstate__(self) -> dict:
        # FreeType faces stay in the process that made them (DataLoader workers).
        state = dict(self.__dict__)
        state["_faces"], state["_widths"] = {}, {}
        return state

    def font_index(self, char: str) -> int:
        """Index of the first font that has ``char``, or -1 when none has it."""
        index = self._which.get(char)
        if index is None:
            code = ord(char)
            index = next((i for i, cover in enumerate(self.cover) if code in cover), -1)
            self._which[char] = index
        return index

    def face(self, index: int, size: int) -> ImageFont.FreeTypeFont:
        """The FreeType face of font ``index`` at ``size`` px (basic layout: same pixels
        with or without libraqm)."""
        key = (index, size)
        face = self._faces.get(key)
        if face is None:
            try:
                face = ImageFont.truetype(self.paths[index], size,
                                          layout_engine=ImageFont.Layout.BASIC)
            except OSError as exc:
                raise ConfigError(f"cannot load font {self.paths[index]}: {exc}") from None
            self._faces[key] = face
        return face

    def width(self, char: str, index: int, size: int) -> float:
        """Advance width of ``char`` in font ``index`` at ``size`` px (cached)."""
        key = (char, index, size)
        value = self._widths.get(key)
        if value is None:
            value = self.face(index, size).getlength(char)
            self._widths[key] = value
        return value
