"""Acceptance: the example plugin installs from its folder like any pip package and trains.

``pip install --target`` puts ``xmodal-timeseries`` (with its ``xmodal`` entry point)
into a temporary folder; ``xmodal`` run with that folder on ``PYTHONPATH`` must list
the plugin and train on the UCR ArrowHead set with the plugin's own config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "xmodal-timeseries"
MULTILABEL = ROOT / "plugins" / "xmodal-multilabel"
XMODAL = Path(sys.executable).parent / "xmodal"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    pytest.importorskip("pywt", reason="the example plugin needs PyWavelets")
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # --no-build-isolation: setuptools from this environment, so no network is needed
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(target), str(PLUGIN), str(MULTILABEL)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(build)},
    )
    assert result.returncode == 0, result.stderr
    assert (target / "xmodal_timeseries" / "adapter.py").is_file()
    assert (target / "xmodal_multilabel" / "task.py").is_file()
    return target


def _xmodal(target: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XMODAL_DATA": str(Path(os.environ.get("XMODAL_DATA", ROOT)).resolve()), "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1",
           "XMODAL_CACHE": str(tmp_path / "cache")}
    env.pop("XMODAL_LOAD_PLUGINS", None)
    return subprocess.run([str(XMODAL), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


def test_installed_plugin_is_listed(installed, tmp_path):
    result = _xmodal(installed, tmp_path, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    entry = listing["timeseries"]
    assert entry["package"] == "xmodal-timeseries" and entry["version"] == "0.1.0"
    assert entry["hooks"] == ["register_datasets", "register_modalities"]
    assert entry["provides"]["modalities"] == ["timeseries"]
    assert "arrowhead" in entry["provides"]["datasets"]
    assert listing["multilabel"]["provides"] == {"datasets": ["fsdd_attributes"], "heads": ["multilabel"]}


def test_installed_plugin_trains_on_arrowhead(installed, tmp_path):
    data = os.environ.get("XMODAL_DATA")
    if not data or not (Path(data) / "ucr" / "ArrowHead").is_dir():
        pytest.skip("XMODAL_DATA with ucr/ArrowHead is needed")
    result = _xmodal(
        installed, tmp_path, "fit", "--modality", "timeseries",
        "--config", str(PLUGIN / "configs" / "arrowhead.yaml"),
        "--data.adapter.image_size", "32", "--data.num_workers", "0", "--data.batch_size", "8",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy:" in result.stdout
    assert list((tmp_path / "runs").rglob("*.ckpt")), "no checkpoint written"


@pytest.mark.slow
def test_example_plugins_pass_their_own_tests(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1",
           "XMODAL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(PLUGIN / "tests"), str(MULTILABEL / "tests")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " skipped" not in result.stdout.splitlines()[-1] or not os.environ.get("XMODAL_DATA")
