"""Shared fixtures: the real data root and small FSDD subsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("XMODAL_DATA", REPO.parent / "shared" / "data")).resolve()
if os.environ.get("XMODAL_DATA"):
    # CI passes a relative path; tests change directories and write manifests elsewhere
    os.environ["XMODAL_DATA"] = str(DATA)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "fsdd" / "recordings").is_dir():
        pytest.skip(f"shared data not found at {DATA} (set XMODAL_DATA)")
    return DATA


@pytest.fixture(scope="session")
def fsdd_wavs(data_root: Path) -> list[Path]:
    return sorted((data_root / "fsdd" / "recordings").glob("*.wav"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets its own decode cache, never the user's."""
    if "XMODAL_CACHE" not in os.environ:
        monkeypatch.setenv("XMODAL_CACHE", str(tmp_path_factory.getbasetemp() / "xmodal-cache"))
