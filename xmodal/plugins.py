"""The plugin manager: built-in plugins first, then the ``xmodal`` entry points.

A broken third-party plugin (import error, misspelt hook, wrong hook arguments, an
exception while registering) is reported in one line naming the plugin and skipped,
so one bad package never takes the CLI down. ``XMODAL_STRICT_PLUGINS=1`` (the CLI's
``--strict-plugins``) turns that into an error instead.

Environment:
    XMODAL_LOAD_PLUGINS: comma-separated entry-point names to load (empty = none);
        unset loads all, like ``LLM_LOAD_PLUGINS``.
    XMODAL_DISABLE_PLUGINS: comma-separated plugin names never to load.
    XMODAL_TRACE_PLUGINS: print every hook call to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from xmodal import hookspecs
from xmodal.errors import PluginError

ENTRY_POINT_GROUP = "xmodal"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "xmodal.default_plugins.audio",
    "xmodal.default_plugins.text",
    "xmodal.default_plugins.image",
    "xmodal.default_plugins.backbones",
    "xmodal.default_plugins.heads",
    "xmodal.default_plugins.commands",
    "xmodal.default_plugins.advise",
    "xmodal.default_plugins.retrieval",
    "xmodal.default_plugins.reliability",
)

pm = pluggy.PluginManager("xmodal")
pm.add_hookspecs(hookspecs)

_loaded = False
#: One line per plugin that failed to load, for ``xmodal plugins`` and tests.
load_errors: list[str] = []


@dataclass
class Registration:
    """What one plugin registered under one kind (modality, dataset, ...)."""

    name: str
    value: Any
    plugin: str


@dataclass
class Registry:
    """Name -> provider map for one kind of thing, remembering who provided it."""

    kind: str
    entries: dict[str, Registration] = field(default_factory=dict)

    def add(self, name: str, value: Any, plugin: str) -> None:
        if name in self.entries and self.entries[name].plugin != plugin:
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by {self.entries[name].plugin} "
                f"and by {plugin}"
            )
        self.entries[name] = Registration(name, value, plugin)

    def get(self, name: str) -> Any:
        try:
            return self.entries[name].value
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self.entries)


_registries: dict[str, Registry] = {}


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _strict() -> bool:
    return os.environ.get("XMODAL_STRICT_PLUGINS", "") not in ("", "0", "false")


def _report(plugin_name: str, exc: BaseException | str, what: str = "skipped") -> None:
    """One line on stderr naming the plugin (or a PluginError in strict mode)."""
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    message = " ".join(f"xmodal: plugin {plugin_name!r} {what}: {detail}".split())
    if _strict():
        raise PluginError(message) from (exc if isinstance(exc, BaseException) else None)
    load_errors.append(message)
    print(message, file=sys.stderr)


def _hook_names() -> list[str]:
    return sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, _hook_names(), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_hook_names(module: Any, plugin_name: str) -> None:
    """Report functions that look like hooks but that pluggy would silently ignore.

    pluggy only sees functions marked ``@hookimpl``; a hook missing the marker, or a
    misspelt unmarked one (``register_modalites``), would otherwise do nothing at all.
    """
    known = set(_hook_names())
    problems = []
    for attr in dir(module):
        value = getattr(module, attr, None)
        if not callable(value) or pm.parse_hookimpl_opts(module, attr) is not None:
            continue
        if getattr(value, "__module__", None) != getattr(module, "__name__", None):
            continue  # imported helpers are not this plugin's hooks
        if attr in known:
            problems.append(f"function {attr} is not marked with @hookimpl "
                            "(from xmodal import hookimpl), so xmodal never calls it")
        elif attr.startswith("register_") and _suggest(attr):
            problems.append(f"function {attr} is not an xmodal hook{_suggest(attr)}")
    if problems:
        _report(plugin_name, "; ".join(problems), "warning")


def _register_checked(module: Any, name: str) -> bool:
    """Register one plugin and validate its hooks against the specs right away."""
    try:
        pm.register(module, name=name)
        pm.check_pending()
    except Exception as exc:  # pluggy raises PluginValidationError for bad hooks
        if pm.is_registered(module):
            pm.unregister(module)
        unknown = [attr for attr in dir(module) if attr.startswith("register_")
                   and attr not in _hook_names() and pm.parse_hookimpl_opts(module, attr) is not None]
        hint = "".join(f"; {attr} is not an xmodal hook{_suggest(attr)}" for attr in unknown)
        _report(name, f"{type(exc).__name__}: {exc}{hint}")
        return False
    _check_hook_names(module, name)
    return True


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_plugins() -> None:
    """Load built-in plugins and installed ``xmodal`` entry points (idempotent)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    disabled = set(_env_list("XMODAL_DISABLE_PLUGINS") or [])
    for module_name in DEFAULT_PLUGINS:
        short = module_name.rsplit(".", 1)[-1]
        if module_name in disabled or short in disabled:
            continue
        _register_checked(importlib.import_module(module_name), module_name)

    allowed = _env_list("XMODAL_LOAD_PLUGINS")
    for ep in _entry_points():
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        try:
            module = ep.load()
        except Exception as exc:
            _report(ep.name, exc)
            continue
        _register_checked(module, ep.name)

    if os.environ.get("XMODAL_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()


def _collect(kind: str, hook_name: str) -> Registry:
    """Call one ``register_*`` hook plugin by plugin, isolating failures."""
    if kind in _registries:
        return _registries[kind]
    load_plugins()
    registry = Registry(kind)
    order = {plugin: index for index, (_, plugin) in enumerate(pm.list_name_plugin())}
    impls = sorted(getattr(pm.hook, hook_name).get_hookimpls(), key=lambda i: order.get(i.plugin, 0))
    for impl in impls:  # registration order: built-ins first, so they keep their names
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

        pending: list[tuple[str, Any]] = []

        def register(name: str, value: Any, *extra: Any, _pending: list = pending) -> None:
            _pending.append((name, (value, *extra) if extra else value))

        try:
            impl.function(register=register)
            for name, value in pending:  # all or nothing: a plugin that fails half way adds nothing
                if name in registry.entries and registry.entries[name].plugin != plugin_name:
                    registry.add(name, value, plugin_name)  # raises: registered twice
            for name, value in pending:
                registry.add(name, value, plugin_name)
        except Exception as exc:
            _report(plugin_name, exc, f"skipped in {hook_name}")
    _registries[kind] = registry
    return registry


def modalities() -> Registry:
    """Registered modality adapters by name."""
    return _collect("modality", "register_modalities")


def datasets() -> Registry:
    """Registered data set factories by name."""
    return _collect("dataset", "register_datasets")


def weight_sources() -> Registry:
    """Registered offline weight loaders by timm model name."""
    return _collect("weight source", "register_weight_sources")


def heads() -> Registry:
    """Registered task heads by name."""
    return _collect("head", "register_heads")


def commands() -> Registry:
    """Registered extra CLI commands by name: value is ``(main, help)``."""
    return _collect("command", "register_commands")


def plugin_info() -> list[dict[str, Any]]:
    """One dict per registered plugin: name, package, version and hooks, for ``xmodal plugins``."""
    load_plugins()
    dists = {}
    for ep in _entry_points():
        dists[ep.name] = ep.dist
    info = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        dist = dists.get(name)
        if dist is not None:
            package, version = dist.metadata["Name"], dist.version
        else:
            package = "xmodal"
            version = importlib.metadata.version("xmodal")
        info.append({"name": name, "package": package, "version": version, "hooks": hooks})
    return sorted(info, key=lambda item: item["name"])


def reset_for_tests() -> None:
    """Forget loaded plugins and registries (tests re-load with other settings)."""
    global _loaded
    for plugin in list(pm.get_plugins()):
        pm.unregister(plugin)
    _registries.clear()
    load_errors.clear()
    _loaded = False


def resolve(kind: str, name: str) -> Callable[..., Any]:
    """Look up ``name`` in the registry for ``kind`` ('modality', 'dataset', ...)."""
    return {
        "modality": modalities,
        "dataset": datasets,
        "weight source": weight_sources,
        "head": heads,
        "command": commands,
    }[kind]().get(name)
