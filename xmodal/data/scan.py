"""Decode every item once, up front: find bad inputs and fill the decode cache.

The scan runs the adapter's ``decode`` in DataLoader workers. Errors come back as
values, not exceptions, so the ``on_bad_file`` policy is applied in the main process
with the file's name and reason intact. For fixed-shape modalities the decoded
samples are written to one memory-mapped ``.npy`` keyed by the inputs (path, size,
mtime, or the text itself) and the adapter settings, so epoch 2+ and later runs skip
decoding entirely.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xmodal.adapters.base import ModalityAdapter
from xmodal.data.spec import Item
from xmodal.errors import BadInputError, ConfigError

POLICIES = ("error", "skip", "warn")


@dataclass
class BadFiles:
    """Bad inputs found so far: ``(name, reason)`` rows for ``bad_files.csv``."""

    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, error: BadInputError) -> None:
        self.rows.append((error.source, error.reason))

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(self.rows)
        os.replace(tmp, path)
        return path


def apply_policy(error: BadInputError, policy: str, report: BadFiles) -> None:
    """``error``: raise; ``skip``: record; ``warn``: record and warn once per file."""
    if policy == "error":
        raise error
    report.add(error)
    if policy == "warn":
        warnings.warn(f"skipping bad input {error}", stacklevel=2)


def _is_file(source: Any) -> bool:
    """True for an existing file; False for a text that is no path (too long, NUL...)."""
    try:
        return Path(source).is_file()
    except (OSError, ValueError):
        return False


def item_fingerprint(item: Item) -> str:
    source = item.source
    if isinstance(source, (str, os.PathLike)) and len(str(source)) < 4096 and _is_file(source):
        stat = Path(source).stat()
        return f"{source}|{stat.st_size}|{stat.st_mtime_ns}"
    if isinstance(source, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()
    return f"{item.name}|{hashlib.sha256(str(source).encode('utf-8', 'surrogatepass')).hexdigest()}"


def cache_key(items: Sequence[Item], adapter: ModalityAdapter) -> str:
    digest = hashlib.sha256(adapter.cache_key().encode())
    for item in items:
        digest.update(item_fingerprint(item).encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:24]


class DecodeAll(Dataset):
    """Decode items in DataLoader workers, returning errors as values that name the item.

    Each element is ``(index, tensor, None)`` or ``(index, None, BadInputError)``, so the
    bad-file policy is applied in the main process with the file's name intact.
    """

    def __init__(self, items: Sequence[Item], adapter: ModalityAdapter) -> None:
        self.items = items
        self.adapter = adapter

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, BadInputError | None]:
        item = self.items[index]
        try:
            return index, self.adapter.decode(item.source), None
        except BadInputError as error:
            return index, None, BadInputError(item.name, error.reason, self.adapter.name)
        except Exception as error:  # a library failed on odd input: still name the file
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            return index, None, BadInputError(item.name, reason.strip(), self.adapter.name)


def identity_collate(batch: Any) -> Any:
    """``collate_fn`` for :class:`DecodeAll` with ``batch_size=None`` (no batching)."""
    return batch


@dataclass
class ScanResult:
    """Items that decoded, and (for fixed-shape modalities) their decoded array."""

    items: list[Item]
    array: np.ndarray | None


def scan(
    items: Sequence[Item],
    adapter: ModalityAdapter,
    policy: str,
    report: BadFiles,
    num_workers: int = 0,
    cache_dir: Path | None = None,
    keep: bool = True,
    cache_max_gb: float | None = None,
) -> ScanResult:
    """Decode every item once; apply the bad-file policy; return the usable items.

    Args:
        keep: keep decoded samples (fixed-shape modalities) for training from memory
            or the memory-mapped cache; ``False`` only validates.
        cache_max_gb: size limit of ``cache_dir``; the least recently used entries are
            evicted after a new one is written (``None``: no limit).
    """
    if policy not in POLICIES:
        raise ConfigError(f"on_bad_file must be one of {', '.join(POLICIES)}, not {policy!r}")
    keep = keep and adapter.fixed_shape
    cached = _load_cache(items, adapter, cache_dir) if keep else None
    if cached is not None:
        array, good_mask, errors = cached
        for name, reason in errors:
            apply_policy(BadInputError(name, reason, adapter.name), policy, report)
        return ScanResult([item for item, ok in zip(items, good_mask) if ok], array)

    loader = DataLoader(DecodeAll(items, adapter), batch_size=None, shuffle=False,
                        num_workers=num_workers, collate_fn=identity_collate)
    decoded: list[Any] = [None] * len(items)
    errors: list[tuple[str, str]] = []
    for index, value, error in loader:
        if error is not None:
            errors.append((error.source, error.reason))
            apply_policy(error, policy, report)
        elif keep:
            decoded[index] = value
    good_mask = [value is not None for value in decoded] if keep else [True] * len(items)
    if not keep:
        bad_names = {name for name, _ in errors}
        good_mask = [item.name not in bad_names for item in items]
    good = [item for item, ok in zip(items, good_mask) if ok]
    array = None
    if keep and good:
        array = np.stack([torch.as_tensor(v).numpy() for v in decoded if v is not None])
        if cache_dir is not None:
            array = _save_cache(items, adapter, cache_dir, array, good_mask, errors)
            if cache_max_gb is not None:
                evict(cache_dir, cache_max_gb, keep=_paths(items, adapter, cache_dir))
    return ScanResult(good, array)


def _paths(items: Sequence[Item], adapter: ModalityAdapter, cache_dir: Path) -> tuple[Path, Path]:
    key = cache_key(items, adapter)
    return cache_dir / f"{adapter.name}-{key}.npy", cache_dir / f"{adapter.name}-{key}.json"


def _load_cache(items, adapter, cache_dir):  # type: ignore[no-untyped-def]
    if cache_dir is None:
        return None
    array_path, meta_path = _paths(items, adapter, cache_dir)
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged cache entry is rebuilt, never trusted
    if len(meta["good"]) != len(items) or array.shape[0] != sum(meta["good"]):
        return None
    _touch(array_path, meta_path)
    return array, meta["good"], [tuple(e) for e in meta["errors"]]


def _save_cache(items, adapter, cache_dir, array, good_mask, errors):  # type: ignore[no-untyped-def]
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path, meta_path = _paths(items, adapter, cache_dir)
    tmp = array_path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, array_path)
    meta_tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps({"good": good_mask, "errors": errors,
                                    "adapter": adapter.config()}, default=str))
    os.replace(meta_tmp, meta_path)
    return np.load(array_path, mmap_mode="r", allow_pickle=False)


def _touch(*paths: Path) -> None:
    """Mark cache entries as used now (eviction removes the least recently used)."""
    for path in paths:
        try:
            os.utime(path)
        except OSError:
            pass


def cache_entries(cache_dir: Path) -> list[tuple[float, int, list[Path]]]:
    """``(last used, bytes, files)`` for each entry of a decode cache folder."""
    entries = []
    for array_path in Path(cache_dir).glob("*.npy"):
        if ".tmp." in array_path.name:
            continue
        files = [array_path, array_path.with_suffix(".json")]
        present = [f for f in files if f.is_file()]
        try:
            used = max(f.stat().st_mtime for f in present)
            size = sum(f.stat().st_size for f in present)
        except OSError:
            continue  # removed meanwhile by another process
        entries.append((used, size, present))
    return sorted(entries, key=lambda entry: entry[0])


def evict(cache_dir: Path, max_gb: float, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove the least recently used entries until the folder holds at most ``max_gb``.

    Entries in ``keep`` (the one just written) are never removed. Returns the removed
    files.
    """
    entries = cache_entries(cache_dir)
    total = sum(size for _, size, _ in entries)
    limit = max_gb * 1e9
    removed: list[Path] = []
    for _, size, files in entries:
        if total <= limit:
            break
        if any(f in keep for f in files):
            continue
        for f in files:
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
        total -= size
    return removed
