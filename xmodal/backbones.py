"""timm backbones: creation with offline weight sources, and stage-wise freezing.

Stages come from timm's ``feature_info`` (never hard-coded layer indices), so
freezing "the first k stages" means the same thing for every timm architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from xmodal.errors import ConfigError, WeightsUnavailable

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights safely: safetensors, or ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailable(
            f"refusing to load {path}: it is not a plain tensor file that loads with "
            f"weights_only=True ({first}). Only tensors are loaded, never pickled code."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def map_in_order(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking shapes.

    For weight files exported from another implementation of the same architecture
    whose tensors come in the same order under other names.
    """
    target_state = target.state_dict()
    if len(source) != len(target_state):
        raise WeightsUnavailable(
            f"weights have {len(source)} tensors, the model {len(target_state)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, dst) in zip(source.items(), target_state.items()):
        if tuple(tensor.shape) != tuple(dst.shape):
            raise WeightsUnavailable(
                f"tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(dst.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    pretrained: bool = True,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, num_classes=0)`` with pretrained weights resolved offline first.

    Order: an explicit ``weights`` file; a registered weight source (plugins, e.g. the
    packaged EfficientNet-Lite0 ImageNet weights); timm's hub. ``pretrained=False``
    gives a random initialisation (the ``scratch`` control) and is the only way to get
    one: unavailable weights raise :class:`WeightsUnavailable`, never fall back.
    """
    from xmodal import plugins

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" Similar: {', '.join(close)}." if close else ""
        raise ConfigError(f"unknown timm model {name!r}.{hint}")
    if not pretrained and weights is None:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)

    full = timm.create_model(name, pretrained=False, **kwargs)
    if weights is not None:
        state = load_state_dict_file(weights)
    elif name in plugins.weight_sources().names():
        state = plugins.weight_sources().get(name)()
    else:
        try:
            return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
        except Exception as exc:
            raise WeightsUnavailable(
                f"no pretrained weights for {name!r} here: no packaged weights and timm's hub "
                f"failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). Pass a local "
                f"file with --model.weights PATH, or --model.pretrained false for a random init."
            ) from None
    headless = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    classifier = (full.default_cfg.get("classifier") or "") + "."
    without_head = {k: v for k, v in state.items() if not k.startswith(classifier)}
    for model, weights in ((full, state), (headless, without_head)):
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError:
            continue
        model.reset_classifier(0)
        return model
    if len(state) == len(full.state_dict()):  # same architecture, other names: map by order
        full.load_state_dict(map_in_order(state, full), strict=True)
        full.reset_classifier(0)
        return full
    headless.load_state_dict(map_in_order(without_head, headless), strict=True)
    return headless


def stage_boundaries(model: nn.Module) -> list[int]:
    """Index into ``named_parameters()`` just past each feature_info stage."""
    names = [name for name, _ in model.named_parameters()]
    boundaries = []
    for info in model.feature_info:
        prefix = info["module"] + "."
        last = max((i for i, name in enumerate(names) if name.startswith(prefix)), default=-1)
        boundaries.append(last + 1)
    return boundaries


def num_stages(model: nn.Module) -> int:
    return len(model.feature_info)


def stage_parameter_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters split at stage boundaries: group 0 = stem + stage 1, ..., last = after the last stage."""
    params = list(model.parameters())
    groups, start = [], 0
    for end in stage_boundaries(model):
        groups.append(params[start:end])
        start = end
    groups.append(params[start:])
    return [g for g in groups if g]


def freeze_stages(model: nn.Module, stages: int | str) -> int:
    """Freeze the stem and the first ``stages`` stages (``"all"`` or ``-1``: everything).

    Returns the number of frozen parameter tensors. Call :func:`set_frozen_bn_eval` after
    every ``train()`` so frozen BatchNorm layers keep their running statistics.
    """
    params = list(model.parameters())
    if stages in ("all", -1):
        cut = len(params)
    elif stages in ("none", 0, None):
        cut = 0
    else:
        count = int(stages)
        total = num_stages(model)
        if not 0 <= count <= total:
            raise ConfigError(f"freeze must be 0..{total}, 'all' or 'none', not {stages!r}")
        cut = stage_boundaries(model)[count - 1]
    for index, param in enumerate(params):
        param.requires_grad_(index >= cut)
    return cut


def set_frozen_bn_eval(model: nn.Module) -> None:
    """Put BatchNorm layers whose parameters are all frozen into eval mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def data_config(model: nn.Module) -> dict[str, Any]:
    """The backbone's pretrained input config (size, interpolation, mean, std)."""
    return timm.data.resolve_data_config({}, model=model)
