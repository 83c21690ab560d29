"""Plugin loading: broken plugins are reported in one line and skipped; strict mode fails.

The sample plugins live in ``tests/plugins`` with a committed ``.dist-info`` that
declares them as ``xmodal`` entry points, so they load exactly like installed packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xmodal import hookspecs, plugins
from xmodal.errors import PluginError

SAMPLES = Path(__file__).parent / "plugins"
XMODAL = Path(sys.executable).parent / "xmodal"

# entry point -> words its one-line report must contain
BROKEN = {
    "import_error": ["ModuleNotFoundError", "xmodal_dependency_that_does_not_exist"],
    "bad_signature": ["registr", "register_datasets"],
    "raises": ["register_datasets", "cannot find my model files"],
    "misspelt": ["register_modalites", "did you mean register_modalities"],
    "unmarked": ["register_datasets", "@hookimpl"],
    "duplicate": ["audio", "registered twice"],
}


@pytest.fixture
def samples(monkeypatch):
    """Make the sample plugins importable and start from a clean plugin manager."""
    monkeypatch.syspath_prepend(str(SAMPLES))
    for name in ("XMODAL_STRICT_PLUGINS", "XMODAL_DISABLE_PLUGINS", "XMODAL_LOAD_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    plugins.reset_for_tests()
    yield monkeypatch
    plugins.reset_for_tests()


def _load_everything() -> None:
    plugins.load_plugins()
    for registry in (plugins.modalities, plugins.datasets, plugins.heads,
                     plugins.weight_sources, plugins.commands):
        registry()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_plugin_is_one_line_naming_it(samples, capsys, name):
    samples.setenv("XMODAL_LOAD_PLUGINS", f"{name},good")
    _load_everything()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"xmodal: plugin {name!r}"), lines[0]
    for word in BROKEN[name]:
        assert word in lines[0], (word, lines[0])
    assert plugins.load_errors == lines
    # the rest still works: built-ins and the good plugin are there, nothing half-registered
    assert "audio" in plugins.modalities().names()
    assert "sample_good" in plugins.datasets().names()
    assert "half_registered" not in plugins.datasets().names()
    assert "never" not in plugins.datasets().names() + plugins.modalities().names()


def test_duplicate_keeps_the_first_owner(samples, capsys):
    samples.setenv("XMODAL_LOAD_PLUGINS", "duplicate")
    assert plugins.modalities().entries["audio"].plugin == "xmodal.default_plugins.audio"


@pytest.mark.parametrize("name", ["import_error", "bad_signature", "raises", "misspelt"])
def test_strict_mode_fails(samples, name):
    samples.setenv("XMODAL_LOAD_PLUGINS", name)
    samples.setenv("XMODAL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=name):
        _load_everything()


def test_disable_plugin(samples, capsys):
    samples.setenv("XMODAL_LOAD_PLUGINS", "import_error,good")
    samples.setenv("XMODAL_DISABLE_PLUGINS", "import_error")
    _load_everything()
    assert capsys.readouterr().err == ""
    assert "sample_good" in plugins.datasets().names()


def test_disable_builtin(samples):
    samples.setenv("XMODAL_LOAD_PLUGINS", "")
    samples.setenv("XMODAL_DISABLE_PLUGINS", "audio")
    assert "audio" not in plugins.modalities().names()


def test_plugin_info_names_package_version_hooks(samples):
    samples.setenv("XMODAL_LOAD_PLUGINS", "good")
    info = {entry["name"]: entry for entry in plugins.plugin_info()}
    assert info["good"]["package"] == "xmodal-broken-samples"
    assert info["good"]["version"] == "0.1"
    assert info["good"]["hooks"] == ["register_datasets"]
    assert "register_modalities" in info["xmodal.default_plugins.audio"]["hooks"]


def test_hookspecs_are_documented_and_versioned():
    assert hookspecs.VERSION
    for name in dir(hookspecs):
        if name.startswith("register_"):
            doc = getattr(hookspecs, name).__doc__ or ""
            assert "Args:" in doc and "register" in doc and "Called" in doc, name


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(SAMPLES), "OMP_NUM_THREADS": "1", **env}
    for name in ("XMODAL_STRICT_PLUGINS", "XMODAL_DISABLE_PLUGINS"):
        environment.pop(name, None)
    return subprocess.run([str(XMODAL), *args], capture_output=True, text=True, env=environment,
                          timeout=300)


def test_cli_survives_broken_plugins_and_strict_fails():
    loaded = "import_error,bad_signature,misspelt,good"
    result = _cli("plugins", "--json", XMODAL_LOAD_PLUGINS=loaded)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert [p["name"] for p in listing["plugins"]] == ["good"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("xmodal: plugin")]
    assert len(warnings) == 3 and len(listing["errors"]) == 3
    assert {line.split("'")[1] for line in warnings} == {"import_error", "bad_signature", "misspelt"}



def test_cli_strict_and_disable_flags(samples, capsys):
    from xmodal.cli import main

    samples.setenv("XMODAL_LOAD_PLUGINS", "import_error,good")
    assert main(["--strict-plugins", "plugins", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xmodal: error: xmodal: plugin 'import_error'") and err.count("\n") == 1

    samples.delenv("XMODAL_STRICT_PLUGINS")
    plugins.reset_for_tests()
    assert main(["--disable-plugin", "import_error", "plugins", "--json"]) == 0
    captured = capsys.readouterr()
    assert "xmodal: plugin" not in captured.err
    assert [p["name"] for p in json.loads(captured.out)["plugins"]] == ["good"]
