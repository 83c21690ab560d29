"""BaseTask: adapter device transform -> timm backbone -> task head.

The model owns the adapter's *settings* (a plain dict saved in the checkpoint's
hyper-parameters), so a checkpoint alone rebuilds the whole pipeline for predict,
embed and export. Settings left ``None`` (classes, adapter) are taken from the data
module in ``setup``: the usual case when training from a config.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from xmodal import backbones
from xmodal.adapters import create_adapter
from xmodal.errors import ConfigError


#: Learned-vector options of glyph sequences: (option, its saved vocabulary, n-gram length).
_VOCABULARIES = (("char_embedding", "char_vocabulary", 1), ("pair_embedding", "pair_vocabulary", 2),
                 ("triple_embedding", "triple_vocabulary", 3))


class BaseTask(pl.LightningModule):
    """Shared machinery of every head: backbone, freezing, device transform, optimiser.

    Args:
        backbone: timm model name.
        pretrained: load ImageNet weights (packaged offline weights first).
        weights: a local weights file for the backbone (safetensors or a tensor-only
            ``.pth``), overriding ``pretrained``'s source.
        freeze: stages frozen from the input side (timm ``feature_info``), ``"all"``
            or ``"none"``.
        lr: peak learning rate of the head.
        backbone_lr_scale: the backbone's learning rate as a fraction of ``lr``.
        weight_decay: AdamW weight decay.
        scheduler: ``cosine``, ``onecycle`` or ``none``.
        warmup_epochs: linear warm-up before the cosine decay.
        input_adapter: the modality adapter's full settings (``{"modality": ...,
            ...}``), saved in checkpoints; taken from the data module when ``None``.
        class_names: target classes; taken from the data module when ``None``.
        channels_last: use the channels-last memory format (faster on GPU).
        compile: wrap the backbone in ``torch.compile``.
        strategy: fine-tuning strategy (:mod:`xmodal.strategies`): ``freeze_k`` (the
            first ``freeze`` stages frozen), ``linear_probe``, ``two_stage``,
            ``gradual``, ``full``, ``scratch``, ``cut_at``, or ``auto`` (ask
            :func:`xmodal.advise.advise` when fit starts).
        head_epochs: ``two_stage``: head-only epochs before unfreezing.
        unfreeze_every: ``gradual``: epochs between unfreezing steps.
        lr_decay: layer-wise learning-rate decay per stage (``None``: the strategy's
            default, 0.7 for ``full`` and ``gradual``, else 1).
        cut_stage: ``cut_at``: the last backbone stage kept (1-based).
        early_stopping_patience: validation epochs without improvement of ``monitor``
            before stopping (``None``: no early stopping from the model).
        restore_best: roll the weights back to the best validation epoch when fit ends
            (the last weights stay when there is no validation data).
        monitor: validation metric for early stopping and rollback.
        monitor_mode: ``max`` or ``min``.
        feature_cache: compute the frozen prefix's output once and train only the rest
            (:mod:`xmodal.feature_cache`): ``true``, ``false`` or ``auto`` (when the
            input is not augmented and it pays off).
        sequence_hidden: width of the glyph n-gram encoder
            (:class:`~xmodal.adapters.text_glyphs.GlyphSequencePool`), used only when
            the adapter decodes glyph sequences (text ``layout: glyphs``).
        glyph_dropout: ``layout: glyphs``: fraction of character positions blanked in
            training (character-level word dropout).
        char_embedding: ``layout: glyphs``: give every character seen in at least two
            training texts a learned vector, added to its glyph features (Glyce's glyph +
            character-ID embedding); other characters keep their glyph features alone.
        char_vocabulary: those characters; taken from the data module's training split
            when ``None`` (saved, so a checkpoint reloads without the data).
        pair_embedding: ``layout: glyphs``: also give every pair of adjacent characters
            seen in at least two training texts a learned vector, added at the pair's
            first position (fastText's bigram vectors): a memory for two-character words
            whose meaning is not their characters'. Needs ``char_embedding``.
        pair_vocabulary: those pairs, concatenated; from the training split when ``None``.
        triple_embedding: the same for runs of three adjacent characters (fastText's
            trigrams). Needs ``pair_embedding``.
        triple_vocabulary: those runs, concatenated; from the training split when ``None``.
        adversarial: ``layout: glyphs``: adversarial training on the character vectors
            (Miyato et al. 2017, "fast gradient method"): every training batch is also
            fed with its vectors moved this far (per character, in the vectors' units)
            in the direction that raises the loss most. ``0``: off.
        typo_noise: ``layout: glyphs``: in training, drop each character with
            probability ``typo_noise / 2`` and swap it with the next with probability
            ``typo_noise / 2`` (:func:`~xmodal.adapters.text_glyphs.typo_noise`), so the
            model learns texts with typos; ``0``: off.
        typo_consistency: with ``typo_noise`` (classification): instead of replacing the
            training texts, the typo'd copy is fed beside them and this weight times the
            KL divergence of its prediction from the clean one's is added to the loss
            (consistency training, as UDA does): the model is asked to keep its answer
            under typos, not to learn the labels from typo'd text; ``0``: off.
        gram_dropout: ``layout: glyphs``: in training, the fraction of positions whose pair
            and triple vectors are left out, as typos leave them out
            (:class:`~xmodal.adapters.text_glyphs.GlyphSequencePool`); ``0``: off.
    """

    def __init__(
        self,
        backbone: str = backbones.DEFAULT_BACKBONE,
        pretrained: bool = True,
        weights: str | None = None,
        freeze: int | str = 2,
        lr: float = 1e-3,
        backbone_lr_scale: float = 1.0,
        weight_decay: float = 1e-2,
        scheduler: str = "cosine",
        warmup_epochs: int = 0,
        input_adapter: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        strategy: str = "freeze_k",
        head_epochs: int = 1,
        unfreeze_every: int = 1,
        lr_decay: float | None = None,
        cut_stage: int = 3,
        early_stopping_patience: int | None = 5,
        restore_best: bool = True,
        monitor: str = "val/acc",
        monitor_mode: str = "max",
        feature_cache: bool | str = "auto",
        sequence_hidden: int = 256,
        glyph_dropout: float = 0.0,
        char_embedding: bool = False,
        char_vocabulary: str | None = None,
        pair_embedding: bool = False,
        pair_vocabulary: str | None = None,
        triple_embedding: bool = False,
        triple_vocabulary: str | None = None,
        adversarial: float = 0.0,
        typo_noise: float = 0.0,
        gram_dropout: float = 0.0,
        typo_consistency: float = 0.0,
    ) -> None:
        super().__init__()
        from xmodal.feature_cache import GlyphPrefixMemo

        if adversarial < 0:
            raise ValueError(f"adversarial must be >= 0, not {adversarial}")
        if not 0.0 <= typo_noise < 1.0:
            raise ValueError(f"typo_noise must be in [0, 1), not {typo_noise}")
        if typo_consistency < 0:
            raise ValueError(f"typo_consistency must be >= 0, not {typo_consistency}")
        if typo_consistency and not typo_noise:
            raise ConfigError("typo_consistency needs typo_noise (the typo rate of the copy)")
        if pair_embedding and not char_embedding:
            raise ConfigError("pair_embedding needs char_embedding (set both to true)")
        if triple_embedding and not pair_embedding:
            raise ConfigError("triple_embedding needs pair_embedding (and char_embedding)")
        self.glyph_memo = GlyphPrefixMemo()
        self.save_hyperparameters()
        self._create_backbone()
        self.device_transform: nn.Module | None = None
        self.augment: nn.Module | None = None
        self.head: nn.Module | None = None
        self.sequence_pool: nn.Module | None = None
        self.prefix_cache: Any = None  # set by xmodal.feature_cache.FeatureCache during fit
        self.apply_freeze()
        if input_adapter is not None:
            self._build_transform(input_adapter)
        if class_names is not None:
            self._build_head()

    # -- construction ---------------------------------------------------------------

    def apply_freeze(self) -> None:
        """Freeze what the fine-tuning strategy freezes in its first epoch."""
        self.finetuning.apply(self.backbone, 0)

    def _create_backbone(self) -> None:
        """Strategy, then backbone: ``scratch`` needs no weights, ``cut_at`` truncates."""
        from xmodal.strategies import make_strategy

        hp = self.hparams
        name = "freeze_k" if hp.strategy == "auto" else hp.strategy  # resolved when fit starts
        self.finetuning = make_strategy(
            name, freeze=hp.freeze, lr_decay=hp.lr_decay, head_epochs=hp.head_epochs,
            unfreeze_every=hp.unfreeze_every, cut_stage=hp.cut_stage)
        pretrained = hp.pretrained and self.finetuning.pretrained
        backbone = backbones.create_backbone(
            hp.backbone, pretrained=pretrained, weights=hp.weights if pretrained else None)
        self.data_config = backbones.data_config(backbone)
        self.backbone = self.finetuning.configure_backbone(backbone)
        self.num_features = self.backbone.num_features

    def configure_callbacks(self) -> list[pl.Callback]:
        """The strategy's callback, early stopping and best-weights rollback.

        They replace callbacks of the same type given to the Trainer (the CLI's
        default ``EarlyStopping``), so ``early_stopping_patience`` is the one setting.
        Without validation data (``--data.val_fraction 0``) nothing stops or rolls back
        the fit: every epoch trains and the last weights are kept.
        """
        from pytorch_lightning.callbacks import EarlyStopping
        from pytorch_lightning.trainer.states import TrainerFn

        from xmodal.strategies import RestoreBest

        hp = self.hparams
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if hp.strategy == "auto" and fitting:
            self.resolve_auto_strategy()
        callbacks: list[pl.Callback] = [self.finetuning]
        validating = self._validating()
        if not validating:
            if fitting:
                pl.utilities.rank_zero_info("no validation data (val_fraction 0): no early stopping, "
                                            "training every epoch and keeping the last weights")
            # replaces the Trainer's (the CLI's) early stopping, which would fail on a metric
            # that is never logged; with strict=False this one never stops
            callbacks.append(EarlyStopping(monitor=hp.monitor, mode=hp.monitor_mode, strict=False))
        elif hp.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(monitor=hp.monitor, mode=hp.monitor_mode,
                                           patience=hp.early_stopping_patience, strict=False))
        if hp.restore_best and validating:
            callbacks.append(RestoreBest(monitor=hp.monitor, mode=hp.monitor_mode))
        if hp.get("feature_cache", "auto") is not False:
            from xmodal.feature_cache import FeatureCache

            callbacks.append(FeatureCache(hp.get("feature_cache", "auto")))
        return callbacks

    def _validating(self) -> bool:
        """Whether fit has validation data (an xmodal DataModule can have none)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        has_validation = getattr(datamodule, "has_validation", None)
        return has_validation() if callable(has_validation) else True

    def configure_model(self) -> None:
        """Speed options, applied once the backbone is final (after ``strategy: auto``)."""
        if self.hparams.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.hparams.compile and getattr(self.backbone, "_compiled_call_impl", None) is None:
            self.backbone.compile()  # in place: checkpoint keys stay the same

    def resolve_auto_strategy(self) -> None:
        """``strategy: auto``: run :func:`xmodal.advise.advise` on the data module and
        rebuild the backbone for the recommended strategy (saved in the hparams)."""
        from xmodal.advise import advise

        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise RuntimeError("strategy 'auto' needs a data module to measure")
        advice = advise(datamodule, backbone=self.hparams.backbone, weights=self.hparams.weights)
        print(advice.report())
        if self.sequence_pool is not None:
            raise ConfigError("strategy: auto probes whole images; the text layout glyphs has "
                              "none: pick a strategy (freeze_k, linear_probe, ...)")
        self.hparams.strategy = advice.strategy
        for key, value in advice.args.items():
            self.hparams[key] = value
        self._create_backbone()
        self.apply_freeze()
        if self.head is not None:
            self._build_head()

    def _build_transform(self, adapter_config: dict[str, Any]) -> None:
        self.adapter = create_adapter(adapter_config)
        self.hparams.input_adapter = self.adapter.config()
        self.device_transform = self.adapter.device_transform(self.data_config)
        self.augment = self.adapter.train_augment()
        self._build_sequence_pool()

    def _build_sequence_pool(self) -> None:
        """For glyph-sequence input, the trainable pool the head sits on."""
        if not self.adapter.sequence_input:
            self.sequence_pool = None
            self.num_features = self.backbone.num_features
            return
        from xmodal.adapters.text_glyphs import GlyphSequencePool

        hp = self.hparams
        self.sequence_pool = GlyphSequencePool(
            self.backbone.num_features, hidden=int(hp.get("sequence_hidden", 256)),
            glyph_dropout=float(hp.get("glyph_dropout", 0.0)),
            vocabulary=hp.get("char_vocabulary") if hp.get("char_embedding") else None,
            pairs=hp.get("pair_vocabulary") if hp.get("pair_embedding") else None,
            triples=hp.get("triple_vocabulary") if hp.get("triple_embedding") else None,
            gram_dropout=float(hp.get("gram_dropout", 0.0)))
        self.num_features = self.sequence_pool.out_features

    @property
    def active_augment(self) -> nn.Module | None:
        """The adapter's train-time augmentation, unless the strategy turns it off."""
        finetuning = getattr(self, "finetuning", None)
        if finetuning is not None and not finetuning.augments_input:
            return None
        return self.augment

    def _build_head(self) -> None:
        self.head = self.configure_head(self.num_features, len(self.hparams.class_names))

    def configure_head(self, in_features: int, num_outputs: int) -> nn.Module:
        """The layers on top of the pooled backbone features (override per task)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.device_transform is None:
            if datamodule is None or getattr(datamodule, "adapter", None) is None:
                raise RuntimeError("the model has no adapter settings and no data module gives one")
            self._build_transform(datamodule.adapter.config())
        for name in ("char_embedding", "pair_embedding", "triple_embedding", "adversarial",
                     "typo_noise", "gram_dropout"):
            if self.hparams.get(name) and self.sequence_pool is None:
                raise ConfigError(f"{name} needs the text layout glyphs (characters in a "
                                  f"sequence); the {type(self.adapter).__name__} decodes images")
        # each vocabulary on its own: one given (e.g. the characters) does not stand for the other
        missing = [(option, vocabulary, ngram) for option, vocabulary, ngram in _VOCABULARIES
                   if self.hparams.get(option) and self.hparams.get(vocabulary) is None]
        for option, vocabulary, ngram in missing:
            if datamodule is None or not hasattr(datamodule, "character_vocabulary"):
                raise RuntimeError(f"{option} needs its {vocabulary} and no data module gives one")
            self.hparams[vocabulary] = datamodule.character_vocabulary(ngram=ngram)
        if missing:
            self._build_sequence_pool()
        if self.head is None:
            if datamodule is None or not getattr(datamodule, "class_names", None):
                raise RuntimeError("the model has no class names and no data module gives them")
            self.hparams.class_names = list(datamodule.class_names)
            self._build_head()

    # -- forward ----------------------------------------------------------------------

    def to_image(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        """Decoded batch -> normalised image batch, augmented in training."""
        with self._profile("xmodal: device transform"):
            images = self.device_transform(batch_inputs)
            augment = self.active_augment
            if self.training and augment is not None:
                images = augment(images)
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def features(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, num_features)``."""
        if self.sequence_pool is not None:
            return self.glyph_features(batch_inputs)
        if self.prefix_cache is not None and self.prefix_cache.serves(batch_inputs):
            with self._profile("xmodal: backbone (after cached prefix)"):
                return self.prefix_cache.suffix(batch_inputs, self.hparams.channels_last)
        images = self.to_image(batch_inputs)
        with self._profile("xmodal: backbone"):
            return self.backbone(images)

    def glyph_features(self, codes: torch.Tensor) -> torch.Tensor:
        """Glyph sequences ``(B, L)``: the backbone sees each distinct glyph of the batch
        once; the sequence pool combines the glyph features in text order."""
        return self.sequence_pool.encode(*self._glyph_vectors(codes))

    def _glyph_vectors(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Glyph sequences ``(B, L)`` -> the pool's character vectors in text order and
        their mask (:meth:`GlyphSequencePool.embed`)."""
        from xmodal.adapters.text_glyphs import split_codes, typo_noise

        if self.training and self.hparams.get("typo_noise") and not self.hparams.get("typo_consistency"):
            codes = typo_noise(codes, float(self.hparams.typo_noise))
        distinct, inverse, mask = split_codes(codes)
        with self._profile("xmodal: backbone (distinct glyphs)"):
            glyph_features = self._distinct_glyph_features(distinct)
        return self.sequence_pool.embed(glyph_features, inverse, mask, distinct)

    def adversarial_loss(self, codes: torch.Tensor,
                         loss_of: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Glyph sequences: the loss on the batch plus the loss on its adversarial copy.

        Why: a few thousand texts let the n-gram encoder lean on single characters; moving
        every character vector a little in the direction that raises the loss most (the
        gradient, normalised per text) and training on both copies makes the prediction
        hold in a neighbourhood of each text (Miyato, Dai and Goodfellow 2017). The move
        is ``adversarial`` per character on average, so longer texts move further in all.

        Returns:
            The summed loss and the clean batch's outputs (for the metrics).
        """
        pool = self.sequence_pool
        vectors, keep = self._glyph_vectors(codes)
        outputs = self.head(pool.encode(vectors, keep))
        loss = loss_of(outputs)
        (gradient,) = torch.autograd.grad(loss, vectors, retain_graph=True)
        gradient = gradient.detach() * keep
        norm = gradient.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1)
        step = float(self.hparams.adversarial) * keep.sum(-1, keepdim=True).sqrt() / norm
        return loss + loss_of(self.head(pool.encode(vectors + gradient * step, keep))), outputs

    def typo_consistency_loss(self, codes: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Glyph sequences: ``typo_consistency`` times KL(clean || typo'd) of the class
        distributions, the clean ``outputs`` (logits) held fixed, so only the typo'd
        copy's prediction moves towards the clean one (Xie et al. 2020, UDA)."""
        from xmodal.adapters.text_glyphs import typo_noise

        noisy = typo_noise(codes, float(self.hparams.typo_noise))
        noisy_outputs = self.head(self.sequence_pool.encode(*self._glyph_vectors(noisy)))
        divergence = F.kl_div(noisy_outputs.log_softmax(-1), outputs.detach().softmax(-1),
                              reduction="batchmean")
        return float(self.hparams.typo_consistency) * divergence

    def _distinct_glyph_features(self, distinct: torch.Tensor) -> torch.Tensor:
        """Backbone features of glyphs; the frozen part of the backbone runs once per code
        point (:class:`~xmodal.feature_cache.GlyphPrefixMemo`), the rest on every batch."""
        augment = self.active_augment if self.training else None
        if augment is not None:
            self.glyph_memo.clear()
            return self.backbone(self.to_image(distinct))
        return self.glyph_memo.features(self.backbone, self.to_image, distinct)

    def _profile(self, action: str) -> Any:
        """The trainer's profiler context for ``action`` (``xmodal fit --profile``)."""
        trainer = self._trainer
        return trainer.profiler.profile(action) if trainer is not None else contextlib.nullcontext()

    def forward(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(batch_inputs))

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "BaseTask":
        self.glyph_memo.clear()  # kept glyph features live on the old device/dtype
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self.glyph_memo.clear()  # new weights, new glyph features
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def train(self, mode: bool = True) -> "BaseTask":
        super().train(mode)
        if mode:
            backbones.set_frozen_bn_eval(self.backbone)
        return self

    # -- optimisation -----------------------------------------------------------------

    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups from the strategy: the head at ``lr``, each backbone stage it may
        train at ``lr * backbone_lr_scale`` times its layer-wise decay."""
        return self.finetuning.parameter_groups(self)

    def configure_optimizers(self) -> Any:
        groups = self.parameter_groups()
        optimizer = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        kind = self.hparams.scheduler
        if kind == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if kind == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=total
            )
        elif kind == "cosine":
            warmup = 0
            if self.hparams.warmup_epochs and self.trainer.max_epochs:
                warmup = int(total * self.hparams.warmup_epochs / self.trainer.max_epochs)

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / (warmup + 1)
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1.0 + torch.cos(torch.tensor(torch.pi * min(1.0, progress))).item())

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        else:
            raise ValueError(f"scheduler must be cosine, onecycle or none, not {kind!r}")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
