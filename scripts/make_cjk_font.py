"""Make xmodal's packaged simplified-Chinese font: Noto Sans CJK SC cut to GB2312.

PyPI ships no CJK font, and the full Noto Sans CJK collection is ~19 MB, so xmodal
ships a subset: every GB2312 character (6763 hanzi plus its symbols), ASCII, CJK
and full-width punctuation. The source is Debian's ``fonts-noto-cjk`` package
(SIL Open Font License 1.1); the OFL allows subsetting and redistribution with the
licence kept, which this script writes beside the font.

Usage::

    python scripts/make_cjk_font.py                      # apt-get download + dpkg -x
    python scripts/make_cjk_font.py --source NotoSansCJK-Regular.ttc

Needs ``fonttools`` (a dependency of xmodal).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

FONTS = Path(__file__).resolve().parent.parent / "xmodal" / "fonts"
OUTPUT = "NotoSansCJKsc-Regular-GB2312.otf"
LICENCE = "NotoSansCJK-LICENSE.txt"
FAMILY = "Noto Sans CJK SC"
#: Unicode blocks kept whole besides GB2312: ASCII, Latin-1 punctuation, general
#: punctuation, CJK symbols and punctuation, full-width forms.
EXTRA_RANGES = [(0x20, 0x7E), (0xA0, 0xBF), (0x2000, 0x206F), (0x3000, 0x303F),
                (0xFF00, 0xFFEF)]


def gb2312_characters() -> set[int]:
    """Every character GB2312 encodes (rows 0xA1-0xF7, cells 0xA1-0xFE)."""
    chars = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(ord(bytes([high, low]).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return chars


def fetch_debian_package(workdir: Path) -> tuple[Path, Path]:
    """Download and unpack ``fonts-noto-cjk``; return (the .ttc, the copyright file)."""
    subprocess.run(["apt-get", "download", "fonts-noto-cjk"], cwd=workdir, check=True)
    deb = next(workdir.glob("fonts-noto-cjk_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "x")], check=True)
    ttc = workdir / "x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
    copyright_file = workdir / "x/usr/share/doc/fonts-noto-cjk/copyright"
    return ttc, copyright_file


def ofl_text(copyright_file: Path) -> str:
    """The Files: * copyright line and the SIL-1.1 licence text of Debian's copyright file."""
    text = copyright_file.read_text(encoding="utf-8")
    holder = re.search(r"Files: \*\nCopyright: (.+)\n", text)
    body = re.search(r"\n\nLicense: SIL-1\.1\n(.*?)(?=\n\n\S|\Z)", text, re.S)
    if not holder or not body:
        raise SystemExit(f"no SIL-1.1 licence found in {copyright_file}")
    lines = [line[1:] if line.startswith(" ") else line for line in body.group(1).splitlines()]
    lines = ["" if line == "." else line for line in lines]
    header = (f"{FAMILY} (subset to GB2312 by scripts/make_cjk_font.py)\n"
              f"Copyright {holder.group(1).strip()}\n"
              "Source: Debian package fonts-noto-cjk (upstream github.com/googlefonts/noto-cjk)\n"
              "Licensed under the SIL Open Font License, Version 1.1:\n\n")
    return header + "\n".join(lines).strip() + "\n"


def pick_sc(ttc: Path):  # type: ignore[no-untyped-def]
    """The Simplified Chinese (proportional) font of the Noto Sans CJK collection."""
    for font in TTCollection(str(ttc)).fonts:
        if font["name"].getDebugName(1) == FAMILY:
            return font
    raise SystemExit(f"{ttc} has no font named {FAMILY!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="NotoSansCJK-Regular.ttc (default: fetch)")
    parser.add_argument("--copyright", type=Path, help="Debian copyright file with the OFL")
    parser.add_argument("--out", type=Path, default=FONTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ttc, copyright_file = args.source, args.copyright
        if ttc is None:
            ttc, copyright_file = fetch_debian_package(Path(tmp))
        font = pick_sc(ttc)
        unicodes = gb2312_characters()
        for low, high in EXTRA_RANGES:
            unicodes.update(range(low, high + 1))
        options = subset.Options()
        options.layout_features = ["*"]  # keep vert/locl etc.: cheap, and correct
        options.name_IDs = ["*"]
        options.notdef_outline = True
        options.hinting = False  # rendering happens at small sizes with FreeType's autohinter
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=unicodes)
        subsetter.subset(font)
        args.out.mkdir(parents=True, exist_ok=True)
        font.save(str(args.out / OUTPUT))
        if copyright_file is not None:
            (args.out / LICENCE).write_text(ofl_text(copyright_file), encoding="utf-8")
    size = (args.out / OUTPUT).stat().st_size
    print(f"wrote {args.out / OUTPUT}: {len(unicodes)} code points asked, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
