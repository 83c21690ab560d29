"""Built-in text modality (rendered characters) and its data sets.

* ``sms_spam``: SMS Spam Collection (English, ham/spam), rendered as wrapped lines.
* ``chnsenticorp``: ChnSentiCorp hotel reviews (simplified Chinese, sentiment),
  rendered as a character grid.
* ``text_manifest``: the user's own CSV/TSV/JSONL file of texts and labels.

The built-in sets have no official split; xmodal's is fixed and documented: data
row index % 5 == 0 is test, the rest train (the data module holds out validation
from train).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from xmodal.data.paths import PACKAGED
from xmodal.data.spec import DatasetSpec
from xmodal.data.text_manifest import TextRow, build_spec, every_fifth_is_test, read_text_rows
from xmodal.errors import BadInputError, ConfigError
from xmodal.hookspecs import hookimpl

#: SMS are short English texts: 5 lines of 11 px DejaVu Sans hold ~200 characters.
SMS_ADAPTER = {"layout": "lines", "image_size": [64, 256], "font_size": 11}
#: Reviews are longer Chinese texts: a 8 x 16 grid of 12 px cells holds 128 characters.
CHNSENTICORP_ADAPTER = {"layout": "grid", "image_size": [96, 192], "cell_size": 12,
                        "font_size": 11}


@hookimpl
def register_modalities(register):
    from xmodal.adapters.text import TextAdapter

    register("text", TextAdapter)


@hookimpl
def register_datasets(register):
    register("sms_spam", sms_spam)
    register("chnsenticorp", chnsenticorp)
    register("text_manifest", text_manifest)


def _skip_empty(name: str, bad: list[BadInputError]) -> list[BadInputError]:
    """Built-in sets: rows known to be empty are skipped with a note, not an error."""
    empty = [error for error in bad if error.reason.startswith("empty or whitespace")]
    if empty:
        where = ", ".join(error.source.rsplit("/", 1)[-1] for error in empty[:5])
        print(f"xmodal: {name}: skipped {len(empty)} row(s) with empty text ({where})",
              file=sys.stderr)
    return [error for error in bad if error not in empty]


def sms_spam(root: Path | None) -> DatasetSpec:
    """SMS Spam Collection (CC BY 4.0): ``label`` ham|spam, ``text``.

    Args:
        root: folder holding ``sms_spam/sms_spam.csv``; ``None`` uses the packaged
            600-message sample so the default command runs offline.
    """
    base = (root / "sms_spam") if root is not None else PACKAGED / "sms_spam"
    path = base / "sms_spam.csv"
    if not path.is_file():
        raise ConfigError(f"SMS spam not found: no file {path}. Point XMODAL_DATA (or "
                          "--data.root) at a folder that holds sms_spam/sms_spam.csv.")
    rows, bad = read_text_rows(path, "text", "label")
    return build_spec(path, rows, _skip_empty("sms_spam", bad), every_fifth_is_test,
                      description="SMS Spam Collection (UCI, CC BY 4.0); split: row % 5 == 0 test",
                      adapter_defaults=SMS_ADAPTER)


def chnsenticorp(root: Path | None) -> DatasetSpec:
    """ChnSentiCorp hotel reviews (research use): ``label`` 1|0, ``review``.

    Args:
        root: folder holding ``chnsenticorp/chnsenticorp_htl_all.csv``.
    """
    if root is None:
        raise ConfigError("chnsenticorp is not packaged: set XMODAL_DATA (or --data.root) to a "
                          "folder holding chnsenticorp/chnsenticorp_htl_all.csv")
    path = root / "chnsenticorp" / "chnsenticorp_htl_all.csv"
    if not path.is_file():
        raise ConfigError(f"ChnSentiCorp not found: no file {path}")
    rows, bad = read_text_rows(path, "review", "label")
    return build_spec(path, rows, _skip_empty("chnsenticorp", bad), every_fifth_is_test,
                      label_names={"0": "negative", "1": "positive"},
                      description="ChnSentiCorp hotel reviews; split: row % 5 == 0 test",
                      adapter_defaults=CHNSENTICORP_ADAPTER)


def text_manifest(
    root: Path | None,
    path: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
    test_every: int | None = None,
    format: Literal["csv", "tsv", "jsonl"] | None = None,
    encoding: str = "utf-8",
    label_names: dict[str, str] | None = None,
) -> DatasetSpec:
    """Your own texts: a CSV, TSV or JSONL file with a text and a label column.

    Args:
        root: the data root; a relative ``path`` is looked up in the current folder
            first, then under ``root``.
        path: the manifest file.
        text_column: the column (or JSON key) holding the text.
        label_column: the column (or JSON key) holding the label.
        split_column: a column saying ``train``, ``val`` or ``test`` per row.
        test_every: without a split column, row index % ``test_every`` == 0 is test
            (``5`` gives the built-in sets' split); default: everything is train.
        format: ``csv``, ``tsv`` or ``jsonl`` (default: from the file's suffix).
        encoding: the file's text encoding.
        label_names: rename raw labels, e.g. ``{"0": "negative", "1": "positive"}``.
    """
    if not path:
        raise ConfigError("text_manifest needs a file: --data.options '{\"path\": \"texts.csv\"}'")
    file = Path(path).expanduser()
    if not file.is_file() and root is not None and (root / path).is_file():
        file = root / path
    if split_column and format == "jsonl":
        raise ConfigError("split_column is supported for CSV/TSV manifests only")
    rows, bad = read_text_rows(file, text_column, label_column, format, encoding)
    splits: dict[int, str] = {}
    if split_column:
        split_rows, _ = read_text_rows(file, split_column, None, format, encoding)
        splits = {row.index: row.text.strip() for row in split_rows}
        for row in list(rows):
            if splits.get(row.index, "train") not in ("train", "val", "test"):
                bad.append(BadInputError(f"{file}:{row.line}", f"unknown split "
                                         f"{splits[row.index]!r} (train, val or test)", "text"))
                rows.remove(row)

    def split(row: TextRow) -> str:
        if split_column:
            return splits.get(row.index, "train")
        if test_every:
            return "test" if row.index % test_every == 0 else "train"
        return "train"

    return build_spec(file, rows, bad, split, label_names=label_names,
                      description=f"text manifest {file}")
