"""Backbone creation, offline weights and stage-wise freezing."""

from __future__ import annotations

import pytest
import torch

from xmodal import backbones
from xmodal.errors import ConfigError, WeightsUnavailable
from xmodal.tasks import ClassificationTask


def test_packaged_weights_are_imagenet_weights() -> None:
    pretrained = backbones.create_backbone("tf_efficientnet_lite0", pretrained=True)
    scratch = backbones.create_backbone("tf_efficientnet_lite0", pretrained=False)
    a = pretrained.conv_stem.weight
    assert not torch.allclose(a, scratch.conv_stem.weight)
    # ImageNet-trained BatchNorm statistics are far from the fresh init (mean 0, var 1)
    assert pretrained.bn1.running_var.mean() != pytest.approx(1.0, abs=0.05)


def test_unknown_model_and_missing_weights_are_clear(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown timm model"):
        backbones.create_backbone("efficientnet_nonexistent")
    with pytest.raises(WeightsUnavailable, match="not found"):
        backbones.create_backbone("resnet18", weights=str(tmp_path / "missing.pth"))


def test_local_weights_file_loads(tmp_path) -> None:
    source = backbones.create_backbone("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    loaded = backbones.create_backbone("resnet18", weights=str(path))
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize("stages", [0, 1, 3, "all"])
def test_freeze_follows_feature_info(stages) -> None:
    model = backbones.create_backbone("tf_efficientnet_lite0", pretrained=False)
    backbones.freeze_stages(model, stages)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    if stages == 0:
        assert not frozen
    elif stages == "all":
        assert len(frozen) == len(list(model.parameters()))
    else:
        last_frozen_module = model.feature_info[stages - 1]["module"]
        assert any(n.startswith(last_frozen_module + ".") for n in frozen)
        next_module = model.feature_info[stages]["module"]
        assert not any(n.startswith(next_module + ".") for n in frozen)
        assert "conv_stem.weight" in frozen


def test_frozen_parameters_do_not_change_after_a_step() -> None:
    model = ClassificationTask(pretrained=False, freeze=2, class_names=["a", "b"],
                               input_adapter={"modality": "audio", "sample_rate": 8000, "n_fft": 256,
                                              "hop_length": 64, "n_mels": 32})
    model.train()
    bn = model.backbone.bn1
    assert not bn.training  # frozen BatchNorm stays in eval mode
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats_before = bn.running_mean.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    waves = torch.randn(4, 8000) * 0.1
    loss = torch.nn.functional.cross_entropy(model(waves), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert "head.1.weight" in changed
    assert not any(n.startswith("backbone.blocks.0.") for n in changed)
    assert torch.equal(bn.running_mean, stats_before)
