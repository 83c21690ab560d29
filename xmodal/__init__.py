"""xmodal: cross-modal transfer learning with ImageNet-pretrained vision backbones.

Audio, text and images (and anything a plugin adds) become image tensors that a timm
backbone learns from, trained with Lightning, extended with pluggy.
"""

from importlib.metadata import PackageNotFoundError, version

from xmodal.hookspecs import hookimpl

try:
    __version__ = version("xmodal")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["hookimpl", "__version__", "create_adapter", "create_backbone",
           "ClassificationTask", "XModalDataModule", "load_plugins"]


def __getattr__(name: str):  # lazy: `import xmodal` stays cheap for plugins
    if name == "create_adapter":
        from xmodal.adapters import create_adapter
        return create_adapter
    if name == "create_backbone":
        from xmodal.backbones import create_backbone
        return create_backbone
    if name == "ClassificationTask":
        from xmodal.tasks import ClassificationTask
        return ClassificationTask
    if name == "XModalDataModule":
        from xmodal.data import XModalDataModule
        return XModalDataModule
    if name == "load_plugins":
        from xmodal.plugins import load_plugins
        return load_plugins
    raise AttributeError(name)
