"""Text manifests: CSV, TSV and JSONL files with a text column and a label column.

Every problem is tied to its line in the file: invalid bytes for the encoding (the
file is decoded with ``surrogateescape``, so one bad row never hides the rest), empty
or whitespace-only texts, missing or empty labels, broken JSON lines. Such rows come
back as :class:`BadInputError` values in :attr:`DatasetSpec.bad`, and the data
module's ``on_bad_file`` policy decides (stop, skip or warn), so nothing is dropped
silently. A missing *column* stops at once: it is a configuration mistake, not a bad
row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from xmodal.data.spec import DatasetSpec, Item
from xmodal.errors import BadInputError, ConfigError

_SURROGATE = re.compile("[\udc80-\udcff]")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl"}


@dataclass
class TextRow:
    """One usable row: ``index`` counts every data row (bad ones too), from 0."""

    index: int
    line: int
    text: str
    label: str


def _format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "tsv", "jsonl"):
            raise ConfigError(f"text manifest format must be csv, tsv or jsonl, not {fmt!r}")
        return fmt
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ConfigError(f"{path}: cannot tell the format from {path.suffix!r}; "
                          "pass format: csv, tsv or jsonl") from None


def _bad_bytes(value: str, encoding: str) -> str | None:
    """The reason a field holds undecodable bytes, or ``None`` when it decoded cleanly."""
    match = _SURROGATE.search(value)
    if match is None:
        return None
    byte = ord(match.group()) - 0xDC00
    encoding = "UTF-8" if encoding.lower().startswith("utf-8") else encoding
    return f"invalid {encoding} byte 0x{byte:02x} at character {match.start()} of the field"


def read_text_rows(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = "label",
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> tuple[list[TextRow], list[BadInputError]]:
    """Read ``(text, label)`` rows; bad rows come back as errors naming ``FILE:LINE``.

    Args:
        path: the manifest file.
        text_column: column (CSV/TSV header) or key (JSONL) of the text.
        label_column: column or key of the label; ``None`` for unlabelled texts.
        fmt: ``csv``, ``tsv`` or ``jsonl`` (default: from the suffix).
        encoding: the file's encoding (``utf-8-sig`` BOMs are handled for UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"text manifest {path} not found")
    fmt = _format(path, fmt)
    raw = path.read_bytes()
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"
        if raw[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
            encoding = "utf-32"  # a byte-order mark says what the file is; believe it
        elif raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            encoding = "utf-16"
    try:
        content = raw.decode(encoding, errors="surrogateescape")
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r}") from None
    reader = _jsonl_rows if fmt == "jsonl" else _delimited_rows
    return reader(path, content, text_column, label_column, fmt, encoding)


def _delimited_rows(path: Path, content: str, text_column: str, label_column: str | None,
                    fmt: str, encoding: str) -> tuple[list[TextRow], list[BadInputError]]:
    handle = io.StringIO(content, newline="")
    # long documents are texts too (the renderer truncates them): lift csv's 128 KB cap
    csv.field_size_limit(max(csv.field_size_limit(), 64 * 2**20))
    reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
    columns = reader.fieldnames or []
    for column in (text_column, label_column):
        if column is not None and column not in columns:
            raise ConfigError(f"{path}: no column {column!r}; columns are "
                              f"{', '.join(map(repr, columns)) or 'none (empty file)'}")
    rows: list[TextRow] = []
    bad: list[BadInputError] = []
    line = reader.line_num + 1
    index = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad.append(BadInputError(f"{path}:{line}", f"unreadable {fmt.upper()} row: {exc}", "text"))
            line = reader.line_num + 1
            index += 1
            continue
        _check(path, line, index, record.get(text_column), record.get(label_column)
               if label_column else "", encoding, rows, bad, label_column)
        line = reader.line_num + 1
        index += 1
    return rows, bad


def _jsonl_rows(path: Path, content: str, text_column: str, label_column: str | None,
                fmt: str, encoding: str) -> tuple[list[TextRow], list[BadInputError]]:
    rows: list[TextRow] = []
    bad: list[BadInputError] = []
    index = 0
    for line, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{line}"
        reason = _bad_bytes(raw, encoding)
        if reason:
            bad.append(BadInputError(where, reason, "text"))
            index += 1
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            bad.append(BadInputError(where, f"not valid JSON: {exc.msg} at column {exc.colno}", "text"))
            index += 1
            continue
        if not isinstance(record, dict):
            bad.append(BadInputError(where, "a JSONL row must be an object", "text"))
            index += 1
            continue
        text = record.get(text_column)
        label = record.get(label_column) if label_column else ""
        if text_column not in record:
            bad.append(BadInputError(where, f"no key {text_column!r}", "text"))
        elif label_column and label_column not in record:
            bad.append(BadInputError(where, f"no key {label_column!r} (the label)", "text"))
        else:
            _check(path, line, index, None if text is None else str(text),
                   None if label is None else str(label), encoding, rows, bad, label_column)
        index += 1
    return rows, bad


def _check(path: Path, line: int, index: int, text: str | None, label: str | None,
           encoding: str, rows: list[TextRow], bad: list[BadInputError],
           label_column: str | None) -> None:
    """Validate one row's text and label; append it to ``rows`` or an error to ``bad``."""
    where = f"{path}:{line}"
    for value in (text, label):
        reason = _bad_bytes(value or "", encoding)
        if reason:
            bad.append(BadInputError(where, reason, "text"))
            return
    if text is None or not text.strip():
        bad.append(BadInputError(where, "empty or whitespace-only text", "text"))
        return
    if label_column and (label is None or not label.strip()):
        bad.append(BadInputError(where, f"empty label (column {label_column!r})", "text"))
        return
    rows.append(TextRow(index, line, text, (label or "").strip()))


def build_spec(
    path: Path,
    rows: list[TextRow],
    bad: list[BadInputError],
    split: Callable[[TextRow], Literal["train", "val", "test"]],
    label_names: dict[str, str] | None = None,
    description: str = "",
    adapter_defaults: dict | None = None,
) -> DatasetSpec:
    """Rows -> DatasetSpec with classes sorted by (mapped) name and a per-row split."""
    names = label_names or {}
    classes = sorted({names.get(row.label, row.label) for row in rows})
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Item]] = {"train": [], "val": [], "test": []}
    for row in rows:
        label = index[names.get(row.label, row.label)]
        splits[split(row)].append(Item(row.text, label, f"{path}:{row.line}"))
    return DatasetSpec(classes, splits["train"], splits["val"] or None, splits["test"] or None,
                       modality="text", adapter_defaults=dict(adapter_defaults or {}),
                       description=description, bad=bad)


def every_fifth_is_test(row: TextRow) -> Literal["train", "test"]:
    """The built-in text data sets' split: data row index % 5 == 0 is test."""
    return "test" if row.index % 5 == 0 else "train"
