"""Read the sktime/aeon ``.ts`` text format (univariate, equal or unequal length).

A ``.ts`` file is a header of ``@key value`` lines (``#`` lines are comments), an
``@data`` line, then one series per line: comma-separated values, then ``:`` and the
class label. Problems are reported with the file and line number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmodal.errors import BadInputError


@dataclass
class TsFile:
    """The parsed content of one ``.ts`` file.

    Attributes:
        series: one float32 array per data line that parsed.
        labels: the class label of each series (as written in the file).
        lines: the 1-based line number of each series, for error messages.
        class_labels: the labels the header declares (``@classLabel true a b c``).
        bad: rows that could not be used, as :class:`BadInputError` naming file:line.
    """

    path: Path
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    class_labels: list[str] = field(default_factory=list)
    header: dict[str, str] = field(default_factory=dict)
    bad: list[BadInputError] = field(default_factory=list)


def read_ts(path: str | Path) -> TsFile:
    """Parse one univariate ``.ts`` file.

    Raises:
        BadInputError: the file is missing, has no ``@data`` section or is
            multivariate (one bad *row* is recorded in ``bad`` instead).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found", "timeseries")
    result = TsFile(path)
    in_data = False
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower() == "@data":
                    in_data = True
                elif line.startswith("@"):
                    key, _, value = line[1:].partition(" ")
                    result.header[key.lower()] = value.strip()
                continue
            _parse_row(result, line, number)
    if not in_data:
        raise BadInputError(path, "no @data line: not a .ts file", "timeseries")
    if result.header.get("univariate", "true").lower() == "false":
        raise BadInputError(path, "multivariate .ts files are not supported", "timeseries")
    declared = result.header.get("classlabel", "").split()
    if declared and declared[0].lower() == "true":
        result.class_labels = declared[1:]
    return result


def _parse_row(result: TsFile, line: str, number: int) -> None:
    where = f"{result.path}:{number}"
    values, sep, label = line.rpartition(":")
    if not sep:
        result.bad.append(BadInputError(where, "no ':label' at the end of the line", "timeseries"))
        return
    if ":" in values:
        result.bad.append(BadInputError(where, "more than one dimension (multivariate row)", "timeseries"))
        return
    try:
        series = np.array([float(v) if v.strip() != "?" else np.nan for v in values.split(",")],
                          dtype=np.float32)
    except ValueError as exc:
        result.bad.append(BadInputError(where, f"not a number: {exc}", "timeseries"))
        return
    if series.size < 2:
        result.bad.append(BadInputError(where, "series has fewer than 2 values", "timeseries"))
        return
    if not np.all(np.isfinite(series)):
        result.bad.append(BadInputError(where, "series has missing or infinite values", "timeseries"))
        return
    result.series.append(series)
    result.labels.append(label.strip())
    result.lines.append(number)
