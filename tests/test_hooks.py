"""The hook contract: built-ins register through the same hooks as third parties."""

from __future__ import annotations

import pytest

import xmodal
from xmodal import hookspecs, plugins
from xmodal.errors import PluginError


def test_builtin_plugins_register_through_hooks() -> None:
    assert "audio" in plugins.modalities().names()
    assert "fsdd" in plugins.datasets().names()
    assert "classification" in plugins.heads().names()
    assert "tf_efficientnet_lite0" in plugins.weight_sources().names()
    assert {"plugins", "preview"} <= set(plugins.commands().names())
    registration = plugins.modalities().entries["audio"]
    assert registration.plugin == "xmodal.default_plugins.audio"


def test_every_hookspec_is_documented_and_versioned() -> None:
    specs = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert len(specs) >= 5
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "Args:" in doc and "register" in doc, name
    assert hookspecs.VERSION
    assert xmodal.hookimpl is hookspecs.hookimpl


def test_duplicate_names_from_two_plugins_are_rejected() -> None:
    registry = plugins.Registry("modality")
    registry.add("audio", object, "plugin-a")
    with pytest.raises(PluginError, match="registered twice.*plugin-a.*plugin-b"):
        registry.add("audio", object, "plugin-b")


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown modality 'nope'.*audio"):
        plugins.modalities().get("nope")


def test_plugin_info_lists_builtins() -> None:
    names = {p["name"] for p in plugins.plugin_info()}
    assert "xmodal.default_plugins.audio" in names
