"""Make the bad-input corpus: real, small files that break naive readers.

Run from the repository root (the files are committed; rerunning rewrites them the
same way)::

    python tests/data/bad/make_corpus.py

``--hour PATH`` writes the 1-hour silent FLAC (about 150 KB) that tests create on
the fly instead of committing. ``expected.csv`` says, per file, whether xmodal must
refuse it (``bad``) or process it (``good``): an odd but valid file (96 kHz 8-channel,
CMYK JPEG, right-to-left text) must train like any other.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SAMPLE = REPO / "xmodal" / "sample_data" / "fsdd" / "recordings"


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def _wav_bytes(data: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def one_hour_silence(path: Path) -> Path:
    """A real 1-hour 16 kHz silent FLAC (silence compresses to almost nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros(16000 * 60, dtype=np.int16)
        for _ in range(60):
            out.write(block)
    return path


def make_audio(folder: Path) -> list[tuple[str, str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    good = _wav_bytes(_tone(0.5, 8000), 8000)
    rows = []

    def put(name: str, payload: bytes, expect: str, what: str) -> None:
        (folder / name).write_bytes(payload)
        rows.append((f"audio/{name}", expect, what))

    put("zero_bytes.wav", b"", "bad", "0 bytes")
    put("truncated_header.wav", good[:30], "bad", "RIFF header cut at 30 bytes")
    put("truncated_data.wav", good[: 44 + len(good[44:]) // 3], "bad", "data chunk cut to a third")
    put("text_named.wav", b"this is a text file, not audio\n" * 20, "bad", "text named .wav")
    nan = _tone(0.5, 8000)
    nan[100], nan[200] = np.nan, np.inf
    put("nan_inf.wav", _wav_bytes(nan, 8000, "FLOAT"), "bad", "float WAV with NaN and Inf samples")
    put("zero_length.wav", _wav_bytes(np.zeros((0, 1), np.float32), 8000), "bad", "valid header, 0 frames")
    # a WAVE header announcing MPEG layer 3 (format tag 0x0055), which libsndfile cannot decode
    fmt = struct.pack("<HHIIHH", 0x0055, 1, 8000, 1000, 1, 0)
    data = bytes(range(256)) * 8
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    put("unsupported_codec.wav", b"RIFF" + struct.pack("<I", len(riff)) + riff, "bad",
        "WAVE with MP3 format tag and junk data")
    put("hires_96k_8ch.wav", _wav_bytes(_tone(0.1, 96000, 8), 96000), "good", "96 kHz, 8 channels")
    return rows


def make_images(folder: Path) -> list[tuple[str, str, str]]:
    """Format-disguise cases; the other image files are made by tests/test_image.py's author."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "RGB")
    rows = []

    def put(name: str, image: Image.Image, fmt: str, what: str, **options: object) -> None:
        image.save(folder / name, format=fmt, **options)
        rows.append((f"images/{name}", "good", what))

    put("gif_named.jpg", rgb.convert("P"), "GIF", "GIF named .jpg")
    put("webp_named.jpg", rgb, "WEBP", "WebP named .jpg")
    put("tiff_named.jpg", rgb, "TIFF", "TIFF named .jpg")
    put("alpha_named.jpg", rgb.convert("RGBA"), "PNG", "PNG with alpha named .jpg")
    put("cmyk.jpg", rgb.convert("CMYK"), "JPEG", "CMYK JPEG")
    for name, what in (("truncated.jpg", "JPEG cut in half"), ("empty.jpg", "0 bytes"),
                       ("text_named.jpg", "text named .jpg"), ("one_pixel.png", "1x1 PNG"),
                       ("bomb_20000px.png", "decompression bomb")):
        if (folder / name).is_file():
            rows.append((f"images/{name}", "bad", what))
    return rows


TEXTS = [  # (text, label, expect, what)
    ("the cat sat on the mat", "a", "good", "plain"),
    ("a quick brown fox", "b", "good", "plain"),
    ("hello world again", "a", "good", "plain"),
    ("another ordinary sentence", "b", "good", "plain"),
    ("", "a", "bad", "empty"),
    ("   \t   ", "b", "bad", "whitespace only"),
    ("x" * 1_000_000, "a", "good", "1 MB line (rendered, truncated)"),
    ("bell\x07 escape\x1b[31m red \x7f del \x0b vt", "b", "good", "control characters"),
    ("مرحبا بالعالم שלום עולם", "a", "good", "right-to-left"),
    ("party 🎉🐍👍🏽 time", "b", "good", "emoji"),
]


def make_text(folder: Path) -> list[tuple[str, str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    rows = []
    for line, (text, label, expect, what) in enumerate(TEXTS, start=2):
        writer.writerow([text, label])
        rows.append((f"text/texts.csv:{line}", expect, what))
    payload = buffer.getvalue().encode("utf-8")
    # one row with bytes that are not UTF-8 (Latin-1 "café" and a lone continuation byte)
    payload += b"caf\xe9 au lait \x80,a\n"
    rows.append((f"text/texts.csv:{len(TEXTS) + 2}", "bad", "invalid UTF-8"))
    (folder / "texts.csv").write_bytes(payload)
    utf16 = "text,label\nhello from utf16,a\nsecond row,b\n".encode("utf-16")  # with BOM
    (folder / "utf16_bom.csv").write_bytes(utf16)
    rows.append(("text/utf16_bom.csv", "good", "UTF-16 with BOM (encoding: utf-16)"))
    return rows


def make_manifests(folder: Path) -> list[tuple[str, str, str]]:
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    names = []
    for digit in (0, 1):
        for path in sorted(SAMPLE.glob(f"{digit}_*.flac"))[:3]:
            shutil.copy(path, clips / path.name)
            names.append((f"clips/{path.name}", str(digit)))
    (clips / "broken.wav").write_bytes(b"")

    def write(name: str, header: list[str], lines: list[list[str]]) -> None:
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(lines)

    write("missing_column.csv", ["path"], [[p] for p, _ in names])
    base = [[p, label, "train"] for p, label in names[:2] + names[3:5]]
    base += [[names[2][0], "0", "test"], [names[5][0], "1", "test"]]
    write("dirty.csv", ["path", "label", "split"], base + [
        ["clips/" + Path(names[2][0]).name.replace(".flac", ".flac"), "0", "test"],  # duplicate
        ["./" + names[0][0], "0", "train"],  # the same file spelt differently: duplicate
        ["../../etc/passwd", "0", "train"],
        ["/etc/passwd", "1", "train"],
        [names[1][0].replace("0_", "9_"), "7", "test"],  # unknown label at test time
        ["clips/broken.wav", "1", "train"],
    ])
    return [
        ("manifests/missing_column.csv", "error", "no label column: one-line config error"),
        ("manifests/dirty.csv:8", "bad", "duplicate path"),
        ("manifests/dirty.csv:9", "bad", "duplicate path spelt ./"),
        ("manifests/dirty.csv:10", "bad", "../../etc/passwd escapes the root"),
        ("/etc/passwd", "bad", "absolute path to a non-audio file"),
        ("manifests/dirty.csv:12", "bad", "label 7 only at test time"),
        ("manifests/clips/broken.wav", "bad", "0-byte clip listed in the manifest"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hour", help="write only the 1-hour silent FLAC to this path")
    args = parser.parse_args()
    if args.hour:
        print(one_hour_silence(Path(args.hour)))
        return
    rows = make_audio(HERE / "audio") + make_images(HERE / "images") + make_text(HERE / "text")
    rows += make_manifests(HERE / "manifests")
    rows.append(("audio/one_hour_silence.flac", "bad", "1 hour: over max_seconds (made by the test)"))
    with (HERE / "expected.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "expect", "what"])
        writer.writerows(rows)
    print(f"{len(rows)} corpus entries under {HERE}")


if __name__ == "__main__":
    main()
