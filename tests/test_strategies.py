"""Fine-tuning strategies freeze exactly what they say, checked after real training steps.

Runs on the FSDD clips packaged with xmodal (or the full FSDD under ``$XMODAL_DATA``),
a couple per class, spectrograms resized to 32x32 so a step takes a second.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from xmodal import backbones, plugins
from xmodal.data import XModalDataModule
from xmodal.strategies import STRATEGY_NAMES, CutBackbone, RestoreBest, make_strategy
from xmodal.tasks.classification import ClassificationTask

# tf_efficientnet_lite0's parameter groups by timm feature_info stage:
# g0 stem + blocks.0 | g1 blocks.1 | g2 blocks.2 | g3 blocks.3-4 | g4 blocks.5-6 | g5 conv_head, bn2
GROUP_PREFIXES = [
    ("conv_stem", "bn1.", "blocks.0."), ("blocks.1.",), ("blocks.2.",),
    ("blocks.3.", "blocks.4."), ("blocks.5.", "blocks.6."), ("conv_head", "bn2."),
]


def group_of(name: str) -> int:
    for index, prefixes in enumerate(GROUP_PREFIXES):
        if name.startswith(prefixes):
            return index
    raise AssertionError(f"parameter {name} in no group")


def small_data(per_class: int = 2) -> XModalDataModule:
    return XModalDataModule(dataset="fsdd", per_class=per_class, batch_size=8, num_workers=0,
                            adapter={"image_size": [32, 32]}, cache=False, val_fraction=0.05)


def trainer(epochs: int = 1, callbacks: list | None = None, val: int = 0) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, limit_train_batches=1, limit_val_batches=val,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=callbacks or [], num_sanity_val_steps=0)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, value in module.state_dict().items()
            if name in before and not torch.equal(before[name], value)}


#: strategy -> backbone groups that must train in a one-epoch run
TRAINED_GROUPS = {
    "linear_probe": set(),
    "freeze_k": {2, 3, 4, 5},  # freeze=2: stem + stages 1-2 frozen
    "two_stage": set(),  # epoch 0 is the head-only phase
    "gradual": set(),  # epoch 0 trains the head only
    "full": {0, 1, 2, 3, 4, 5},
    "scratch": {0, 1, 2, 3, 4, 5},
}


@pytest.mark.parametrize("strategy", sorted(TRAINED_GROUPS))
def test_strategy_freezes_exactly(strategy: str) -> None:
    pl.seed_everything(0)
    task = ClassificationTask(strategy=strategy, lr=1e-2)
    params = {name for name, _ in task.backbone.named_parameters()}
    before = snapshot(task.backbone)
    trainer().fit(task, small_data())
    moved = changed(before, task.backbone)
    expected = {n for n in params if group_of(n) in TRAINED_GROUPS[strategy]}
    moved_params = moved & params
    assert moved_params == expected, (sorted(moved_params - expected)[:5], sorted(expected - moved_params)[:5])
    # frozen BatchNorm kept its running statistics (eval mode), trained BatchNorm updated them
    for name in before:
        if name.endswith("running_mean"):
            assert (name in moved) == (group_of(name) in TRAINED_GROUPS[strategy]), name
    assert task.head[1].weight.requires_grad


def test_linear_probe_trains_without_input_augmentation() -> None:
    """A frozen backbone sees the clean inputs it will be tested on, so the head does
    not learn augmentation artefacts and the features can be cached once."""
    data = small_data()
    data.prepare_spec()
    settings = dict(input_adapter=data.adapter.config(), class_names=list(data.class_names))
    probe = ClassificationTask(strategy="linear_probe", **settings)
    tuned = ClassificationTask(strategy="freeze_k", **settings)
    assert probe.augment is not None and probe.active_augment is None
    assert tuned.active_augment is tuned.augment is not None
    batch = torch.stack([data.adapter.decode(item.source) for item in data.split_items("train")[:4]])
    probe.train()
    tuned.train()
    torch.manual_seed(0)
    assert torch.equal(probe.to_image(batch), probe.device_transform(batch))
    assert not torch.equal(tuned.to_image(batch), tuned.device_transform(batch))


def test_two_stage_unfreezes_after_head_epochs_at_lower_lr() -> None:
    task = ClassificationTask(strategy="two_stage", head_epochs=1, lr=1e-2)
    seen: dict[int, set[int]] = {}
    before = snapshot(task.backbone)

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen[trainer.current_epoch] = {group_of(n) for n, p in pl_module.backbone.named_parameters()
                                           if p.requires_grad}

    run = trainer(epochs=2, callbacks=[Record()])
    run.fit(task, small_data())
    assert seen == {0: set(), 1: {2, 3, 4, 5}}
    moved = {group_of(n) for n in changed(before, task.backbone) if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert moved == {2, 3, 4, 5}
    rates = {g["name"]: g["initial_lr"] for g in run.optimizers[0].param_groups}
    assert rates["head"] == pytest.approx(1e-2) and rates["stage2"] == pytest.approx(2e-3)
    # a lower backbone_lr_scale wins over stage2_lr_scale instead of multiplying with it
    lowered = ClassificationTask(strategy="two_stage", lr=1e-2, backbone_lr_scale=0.05)
    assert lowered.finetuning.backbone_lr_scale(lowered) == pytest.approx(0.05)


def test_gradual_unfreezes_one_group_per_epoch_from_the_top() -> None:
    task = ClassificationTask(strategy="gradual", unfreeze_every=1, lr=1e-2)
    seen: dict[int, set[int]] = {}

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen[trainer.current_epoch] = {group_of(n) for n, p in pl_module.backbone.named_parameters()
                                           if p.requires_grad}

    run = trainer(epochs=4, callbacks=[Record()])
    run.fit(task, small_data())
    assert seen == {0: set(), 1: {5}, 2: {4, 5}, 3: {3, 4, 5}}
    # discriminative learning rates: each group below the top learns 0.7x slower
    rates = {g["name"]: g["initial_lr"] for g in run.optimizers[0].param_groups}
    assert rates["stage5"] == pytest.approx(1e-2)
    assert rates["stage4"] == pytest.approx(0.7e-2) and rates["stage0"] == pytest.approx(1e-2 * 0.7**5)
    assert "lr/stage0" in run.callback_metrics


def test_gradual_schedule_every_two_epochs() -> None:
    strategy = make_strategy("gradual", unfreeze_every=2)
    assert [strategy.frozen_groups(epoch, 6) for epoch in range(6)] == [6, 6, 5, 5, 4, 4]


def test_full_uses_layerwise_lr_decay() -> None:
    task = ClassificationTask(strategy="full", lr_decay=0.5, lr=1e-3, class_names=["a", "b"])
    groups = {g["name"]: g["lr"] for g in task.parameter_groups()}
    assert groups["head"] == pytest.approx(1e-3)
    assert groups["stage5"] == pytest.approx(1e-3)
    assert groups["stage0"] == pytest.approx(1e-3 * 0.5**5)


def test_scratch_is_randomly_initialised() -> None:
    pretrained = backbones.create_backbone()
    task = ClassificationTask(strategy="scratch", class_names=["a", "b"])
    a, b = pretrained.conv_stem.weight, task.backbone.conv_stem.weight
    assert a.shape == b.shape and not torch.allclose(a, b)
    assert all(p.requires_grad for p in task.backbone.parameters())


def test_cut_at_trains_an_intermediate_stage() -> None:
    pl.seed_everything(0)
    task = ClassificationTask(strategy="cut_at", cut_stage=3, freeze=2, lr=1e-2)
    assert isinstance(task.backbone, CutBackbone) and task.num_features == 40
    names = {n for n, _ in task.backbone.named_parameters()}
    assert not any(n.startswith(("model.blocks.3", "model.conv_head")) for n in names)
    before = snapshot(task.backbone)
    trainer().fit(task, small_data())
    moved = {n for n in changed(before, task.backbone) if n in names}
    assert moved == {n for n in names if n.startswith("model.blocks.2.")}
    assert task.head[1].in_features == 40
    # a checkpoint's hyper-parameters rebuild the same cut model
    again = ClassificationTask(**task.hparams)
    again.load_state_dict(task.state_dict())


def test_restore_best_rolls_back_to_the_best_validation_epoch() -> None:
    pl.seed_everything(0)
    task = ClassificationTask(strategy="full", lr=5e-2, early_stopping_patience=None)
    states: list[tuple[float, dict[str, torch.Tensor]]] = []

    class Record(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            states.append((float(trainer.callback_metrics["val/loss"]), snapshot(pl_module)))

    run = pl.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, callbacks=[Record()])
    task.hparams.monitor, task.hparams.monitor_mode = "val/loss", "min"
    run.fit(task, small_data(per_class=3))
    best = min(range(len(states)), key=lambda i: states[i][0])
    final = snapshot(task)
    assert all(torch.equal(final[k], v) for k, v in states[best][1].items())
    restore = next(c for c in run.callbacks if isinstance(c, RestoreBest))
    assert restore.best_epoch == best


def test_early_stopping_patience_is_configurable() -> None:
    from pytorch_lightning.callbacks import EarlyStopping

    task = ClassificationTask(early_stopping_patience=2, class_names=["a", "b"])
    task.trainer = trainer()
    stops = [c for c in task.configure_callbacks() if isinstance(c, EarlyStopping)]
    assert len(stops) == 1 and stops[0].patience == 2


def test_unknown_strategy_is_a_clear_error() -> None:
    from xmodal.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown strategy 'fine'"):
        ClassificationTask(strategy="fine")


@pytest.mark.parametrize("dataset", plugins.datasets().names())
def test_advise_returns_a_valid_strategy_for_every_dataset(dataset: str, tmp_path) -> None:
    from xmodal.advise import advise
    from xmodal.data.paths import data_root
    from xmodal.errors import ConfigError

    options = None
    if dataset == "text_manifest":  # the user's own file: write a small real one
        rows = [("great hotel, friendly staff", "pos"), ("dirty room and rude service", "neg"),
                ("lovely view, would come back", "pos"), ("noisy, cold and overpriced", "neg"),
                ("excellent breakfast", "pos"), ("the worst stay ever", "neg")] * 2
        manifest = tmp_path / "texts.csv"
        manifest.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows))
        options = {"path": str(manifest)}
    data = XModalDataModule(dataset=dataset, num_workers=0, cache=False, options=options)
    try:
        data.prepare_spec()
    except ConfigError as exc:
        if data_root(None) is None:
            pytest.skip(f"{dataset} needs XMODAL_DATA: {exc}")
        raise
    advice = advise(data, sample_per_class=4, image_size=64)
    assert advice.strategy in STRATEGY_NAMES
    assert advice.size in ("small", "large") and advice.similarity in ("similar", "different")
    assert advice.reasons and f"strategy: {advice.strategy}" in advice.config_yaml()
    assert 0.0 <= advice.probe_accuracy <= 1.0


@pytest.mark.parametrize("per_class, score, stages, final, expected", [
    (20, 0.9, {2: 0.5, 3: 0.6}, 0.95, ("small", "similar", "linear_probe")),
    (20, 0.3, {2: 0.5, 3: 0.6}, 0.4, ("small", "different", "cut_at")),
    (500, 0.9, {2: 0.5}, 0.95, ("large", "similar", "freeze_k")),
    (500, 0.3, {2: 0.2}, 0.35, ("large", "different", "full")),
    (500, 0.8, {4: 0.99}, 0.85, ("large", "different", "full")),  # a mid stage probes far better
])
def test_advise_matrix_cells(per_class, score, stages, final, expected) -> None:
    from xmodal.advise import place

    size, similarity, strategy, args, reasons = place(per_class, score, stages, final)
    assert (size, similarity, strategy) == expected
    assert reasons and strategy in STRATEGY_NAMES
    if strategy == "cut_at":
        assert args["cut_stage"] == max(stages, key=stages.get)


def test_advise_is_a_registered_command() -> None:
    assert "advise" in plugins.commands().names()
    main, help_text = plugins.commands().get("advise")
    assert callable(main) and "strategy" in help_text
