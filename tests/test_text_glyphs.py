"""The text adapter's ``glyphs`` layout: code-point sequences, the glyph atlas, the
n-gram pool, the frozen-glyph memo, and a short fit on the packaged SMS sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from xmodal.adapters.text import TextAdapter
from xmodal.adapters.text_glyphs import GlyphJitter, GlyphSequencePool, split_codes, typo_noise
from xmodal.data import XModalDataModule
from xmodal.data.resume import LengthGroupedSampler
from xmodal.errors import ConfigError
from xmodal.tasks.classification import ClassificationTask

SAMPLE_ROOT = Path(__file__).resolve().parent.parent / "xmodal" / "sample_data"
GLYPHS = {"layout": "glyphs", "cell_size": 24, "font_size": 20, "max_chars": 64}
#: Egyptian hieroglyph A001: in neither packaged font.
NO_FONT_HAS_IT = "\U00013000"


def glyphs(**settings) -> TextAdapter:
    return TextAdapter(**{**GLYPHS, **settings})


def test_decode_is_the_code_point_sequence() -> None:
    adapter = glyphs()
    codes = adapter.decode("  caf\u0065\u0301  au\tlait\n ")  # NFC; whitespace runs -> one space
    assert codes.dtype == torch.int32 and codes.shape == (64,)
    text = "café au lait"
    assert codes[:len(text)].tolist() == [ord(ch) for ch in text]
    assert not codes[len(text):].any()  # padding
    assert torch.equal(codes, glyphs().decode("café au lait"))


def test_truncation_and_missing_glyphs_are_counted() -> None:
    adapter = glyphs(max_chars=8)
    assert adapter.decode("x" * 20).tolist() == [ord("x")] * 8
    stats = adapter.render_stats(["short", "a much longer text", f"ok {NO_FONT_HAS_IT}"])
    assert stats.truncated == 1 and stats.with_missing == 1
    assert "max_chars=8" in stats.describe()
    with pytest.warns(UserWarning, match="U\\+13000"):
        adapter.input_report([f"ok {NO_FONT_HAS_IT}"])
    codes = adapter.decode(f"ok {NO_FONT_HAS_IT}")
    assert ord(NO_FONT_HAS_IT) not in codes.tolist() and 0xFFFD in codes.tolist()


def test_atlas_draws_each_glyph_once_and_cjk_is_inked() -> None:
    adapter = glyphs()
    atlas = adapter.device_transform({"mean": (0.5,) * 3, "std": (0.5,) * 3})
    codes = torch.tensor([ord(ch) for ch in "中文好a"])
    images = atlas(codes)
    assert images.shape == (4, 3, 24, 24)
    ink = (images[:, 0] < 0).flatten(1).sum(1)  # dark pixels (below mid-grey)
    assert (ink > 20).all(), ink.tolist()
    assert len(atlas._drawn) == 4
    atlas(codes)
    assert len(atlas._drawn) == 4  # drawn once, kept
    blank = atlas(torch.tensor([0, 32]))
    assert torch.equal(blank[0], blank[1]) and (blank > 0.99).all()


def test_homoglyphs_give_the_same_glyph_image() -> None:
    atlas = glyphs().device_transform({})
    latin, cyrillic = atlas(torch.tensor([ord("a"), ord("\u0430")]))
    assert torch.equal(latin, cyrillic)  # Latin a, Cyrillic а: same pixels, same features
    a, o = atlas(torch.tensor([ord("a"), ord("o")]))
    assert not torch.equal(a, o)


def test_preview_tiles_the_glyphs(tmp_path) -> None:
    from PIL import Image

    from xmodal.cli import main

    out = tmp_path / "g.png"
    assert main(["preview", "--modality", "text", "Привет, 你好 — twenty chars", "-o", str(out),
                 "--adapter", json.dumps(GLYPHS)]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (2 * 24, 16 * 24) and image.min() < 100


def test_glyph_jitter_moves_glyphs_in_place() -> None:
    torch.manual_seed(0)
    images = glyphs().device_transform({})(torch.tensor([ord(ch) for ch in "abcdefgh"]))
    moved = GlyphJitter(3)(images)
    assert moved.shape == images.shape and not torch.equal(moved, images)
    assert torch.equal(GlyphJitter(0)(images), images)


def test_pool_ignores_padding_and_sees_order() -> None:
    torch.manual_seed(0)
    pool = GlyphSequencePool(8, hidden=4, kernels=(1, 2), dropout=0.0).eval()
    features = torch.randn(5, 8)
    short = torch.tensor([[1, 2, 3, 3, 0, 0]])
    longer_pad = torch.tensor([[1, 2, 3, 3, 0, 0, 0, 0]])
    codes_mask = lambda idx: idx != 0  # noqa: E731
    a = pool(features, short, codes_mask(short))
    assert a.shape == (1, pool.out_features) == (1, 16)
    assert torch.allclose(a, pool(features, longer_pad, codes_mask(longer_pad)), atol=1e-6)
    cut = short[:, :4]  # a batch cut at its longest text: the same vector
    assert torch.allclose(a, pool(features, cut, codes_mask(cut)), atol=1e-6)
    swapped = torch.tensor([[2, 1, 3, 3, 0, 0]])
    assert not torch.allclose(a, pool(features, swapped, codes_mask(swapped)))  # bigrams see order
    pool.train()
    assert torch.allclose(a, pool(features, short, codes_mask(short)))  # no dropout set
    pool.glyph_dropout = 0.5
    torch.manual_seed(1)
    dropped = pool(features, short, codes_mask(short))
    assert not torch.allclose(a, dropped)  # training blanks positions
    pool.eval()
    assert torch.allclose(a, pool(features, short, codes_mask(short)))  # evaluation never does
    codes = torch.tensor([[99, 65, 0, 0], [65, 0, 0, 0]], dtype=torch.int32)
    distinct, inverse, mask = split_codes(codes)  # cut after the longest text (2)
    assert distinct.tolist() == [0, 65, 99]
    assert inverse.tolist() == [[2, 1], [1, 0]] and mask.tolist() == [[1, 1], [1, 0]]


def test_character_embedding_adds_to_seen_characters_only() -> None:
    torch.manual_seed(0)
    pool = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0, vocabulary="ba").eval()
    assert pool.vocabulary_codes.tolist() == [97, 98]
    codes = torch.tensor([97, 98, 0x430])  # a, b, Cyrillic а: not in the vocabulary
    assert pool.vocabulary_rows(codes).tolist() == [1, 2, 0]
    features = torch.randn(3, 8)
    inverse, mask = torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.bool)
    plain = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0).eval()
    plain.load_state_dict(pool.state_dict(), strict=False)
    start = pool(features, inverse, mask, codes)
    assert torch.allclose(start, plain(features, inverse, mask))  # zero at the start: glyphs alone
    with pytest.raises(ValueError, match="code points"):
        pool(features, inverse, mask)
    pool.train()
    pool(features, inverse, mask, codes).sum().backward()
    grad = pool.char_embedding.weight.grad
    assert grad[0].abs().sum() == 0 and grad[1:].abs().sum() > 0  # unknown row never learns


def test_pair_embedding_adds_to_known_adjacent_pairs_only() -> None:
    torch.manual_seed(0)
    pool = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0, vocabulary="ab",
                             pairs="baab").eval()
    # text "abab" + padding: pairs ab, ba, ab start at positions 0-2; the last character
    # starts none and neither does padding
    positions = torch.tensor([[97, 98, 97, 98, 0], [98, 0x430, 98, 0, 0]])
    assert pool.pair_rows(positions).tolist() == [[1, 2, 1, 0, 0], [0, 0, 0, 0, 0]]
    codes = torch.tensor([0, 97, 98])
    features = torch.randn(3, 8)
    inverse = torch.tensor([[1, 2, 1, 2]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    plain = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0, vocabulary="ab").eval()
    plain.load_state_dict(pool.state_dict(), strict=False)
    assert torch.allclose(pool(features, inverse, mask, codes), plain(features, inverse, mask, codes))
    pool.train()
    pool(features, inverse, mask, codes).sum().backward()
    grad = pool.pair_embedding.weight.grad
    assert grad[0].abs().sum() == 0 and grad[1:].abs().sum(-1).gt(0).all()
    with pytest.raises(ValueError, match="multiple of 2"):
        GlyphSequencePool(8, pairs="abc")


def test_triple_embedding_keys_runs_of_three_characters() -> None:
    torch.manual_seed(0)
    pool = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0, vocabulary="ab",
                             pairs="ab", triples="ababab").eval()
    # "abab": aba at 0, bab at 1; runs from 2 on reach the padding; a look-alike in the
    # middle (Cyrillic а) makes the run unknown
    positions = torch.tensor([[97, 98, 97, 98, 0], [98, 0x430, 98, 0, 0], [98, 97, 98, 97, 98]])
    assert pool.triple_rows(positions).tolist() == [[1, 2, 0, 0, 0], [0, 0, 0, 0, 0],
                                                    [2, 1, 2, 0, 0]]
    codes = torch.tensor([0, 97, 98])
    features = torch.randn(3, 8)
    inverse = torch.tensor([[1, 2, 1, 2]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    pairs_only = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0, vocabulary="ab",
                                   pairs="ab").eval()
    pairs_only.load_state_dict(pool.state_dict(), strict=False)
    assert torch.allclose(pool(features, inverse, mask, codes),
                          pairs_only(features, inverse, mask, codes))
    pool.train()
    pool(features, inverse, mask, codes).sum().backward()
    grad = pool.triple_embedding.weight.grad
    assert grad[0].abs().sum() == 0 and grad[1:].abs().sum(-1).gt(0).all()
    with pytest.raises(ValueError, match="multiple of 3"):
        GlyphSequencePool(8, pairs="ab", triples="abcd")
    with pytest.raises(ConfigError, match="triple_embedding needs pair_embedding"):
        ClassificationTask(strategy="linear_probe", char_embedding=True, triple_embedding=True)


def test_gram_dropout_leaves_out_pair_and_triple_vectors_in_training_only() -> None:
    pool = GlyphSequencePool(8, hidden=4, kernels=(1,), dropout=0.0, vocabulary="ab",
                             pairs="ab", triples="aba", gram_dropout=0.4)
    positions = torch.tensor([[97, 98, 97, 98]]).repeat(2000, 1)
    rows = pool.pair_rows(positions)
    assert rows[0].tolist() == [1, 0, 1, 0]
    pool.eval()
    assert torch.equal(pool._dropped(rows), rows)
    pool.train()
    torch.manual_seed(0)
    dropped = pool._dropped(rows)
    assert torch.equal(dropped[rows == 0], rows[rows == 0])  # unknown stays unknown
    assert 0.37 < (dropped[rows == 1] == 0).float().mean().item() < 0.43
    # in training, a left-out pair's vector is missing from the sum: some texts differ
    torch.manual_seed(0)
    with torch.no_grad():
        pool.pair_embedding.weight[1:] = 1.0
        pool.triple_embedding.weight[1:] = 1.0
    codes = torch.tensor([0, 97, 98])
    inverse = torch.tensor([[1, 2, 1, 2]]).repeat(64, 1)
    mask = torch.ones(64, 4, dtype=torch.bool)
    vectors, _ = pool.embed(torch.randn(3, 8), inverse, mask, codes)
    first = vectors[:, :, 0]  # pair ab and triple aba start here: 0, 1 or 2 added
    assert len(torch.unique((first - first.min(0).values).round(decimals=4), dim=0)) == 3
    with pytest.raises(ValueError, match="gram_dropout must be in"):
        GlyphSequencePool(8, gram_dropout=1.0)


def test_char_embedding_vocabulary_comes_from_training_texts_and_reloads(tmp_path) -> None:
    pl.seed_everything(0)
    data = _sample_data(per_class=None)
    data.setup("fit")
    vocabulary = data.character_vocabulary()
    assert vocabulary == "".join(sorted(vocabulary)) and " " not in vocabulary and "e" in vocabulary
    once = {code for code, n in _text_counts(data).items() if n == 1}
    assert once and not once & {ord(ch) for ch in vocabulary}  # one text only: left out
    task = ClassificationTask(strategy="linear_probe", lr=3e-3, sequence_hidden=32,
                              char_embedding=True, early_stopping_patience=None)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    assert task.hparams.char_vocabulary == vocabulary
    assert task.sequence_pool.char_embedding.weight[1:].abs().sum() > 0  # it learned
    _assert_checkpoint_reloads(trainer, task, data, tmp_path / "chars.ckpt")
    pairs = data.character_vocabulary(ngram=2)
    texts = [_text_of(data, index) for index in range(len(data.datasets["train"]))]
    assert len(pairs) % 2 == 0 and pairs[:2] < pairs[2:4]
    for pair in (pairs[i:i + 2] for i in range(0, len(pairs), 2)):
        assert " " not in pair and sum(pair in text for text in texts) >= 2
    triples = data.character_vocabulary(ngram=3)
    assert triples and len(triples) % 3 == 0
    for triple in (triples[i:i + 3] for i in range(0, len(triples), 3)):
        assert " " not in triple and sum(triple in text for text in texts) >= 2
        assert triple[:2] in {pairs[i:i + 2] for i in range(0, len(pairs), 2)}
    # the characters given (as a reloaded checkpoint's), pairs and triples still read from the data
    task = ClassificationTask(strategy="linear_probe", lr=3e-3, sequence_hidden=32,
                              char_embedding=True, char_vocabulary=vocabulary,
                              pair_embedding=True, triple_embedding=True,
                              early_stopping_patience=None)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    assert task.hparams.pair_vocabulary == pairs
    assert task.hparams.triple_vocabulary == triples
    assert task.sequence_pool.pair_embedding.weight[1:].abs().sum() > 0
    assert task.sequence_pool.triple_embedding.weight[1:].abs().sum() > 0
    _assert_checkpoint_reloads(trainer, task, data, tmp_path / "pairs.ckpt")
    with pytest.raises(ConfigError, match="pair_embedding needs char_embedding"):
        ClassificationTask(strategy="linear_probe", pair_embedding=True)
    pages = XModalDataModule(dataset="sms_spam", modality="text", adapter={"layout": "lines"},
                             root=str(SAMPLE_ROOT), num_workers=0)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="char_embedding needs the text layout glyphs"):
        trainer.fit(ClassificationTask(strategy="linear_probe", char_embedding=True), datamodule=pages)
    with pytest.raises(ConfigError, match="adversarial needs the text layout glyphs"):
        trainer.fit(ClassificationTask(strategy="linear_probe", adversarial=0.1), datamodule=pages)


def _assert_checkpoint_reloads(trainer, task, data, path: Path) -> ClassificationTask:  # type: ignore[no-untyped-def]
    """Save, reload with ``weights_only``: the same outputs on a validation batch."""
    trainer.save_checkpoint(path)
    loaded = ClassificationTask.load_from_checkpoint(path, weights_only=True).eval()
    batch = next(iter(data.val_dataloader()))["input"]
    task.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(batch), task(batch), atol=1e-5)
    return loaded


def _text_counts(data: XModalDataModule) -> dict[int, int]:
    counts: dict[int, int] = {}
    array = data.datasets["train"].array
    for row in array:
        for code in set(np.asarray(row).tolist()) - {0, 32}:
            counts[code] = counts.get(code, 0) + 1
    return counts


def _sample_data(per_class: int | None = 40, **options) -> XModalDataModule:
    """The packaged 600-message SMS sample (whatever XMODAL_DATA says)."""
    return XModalDataModule(dataset="sms_spam", modality="text", adapter=GLYPHS, batch_size=32,
                            num_workers=0, per_class=per_class, root=str(SAMPLE_ROOT), **options)


def test_linear_probe_runs_the_backbone_once_per_glyph() -> None:
    default = _sample_data()
    default.setup("fit")
    assert not isinstance(default.train_dataloader().sampler, LengthGroupedSampler)
    data = _sample_data(group_by_length=True)
    data.setup("fit")
    assert isinstance(data.train_dataloader().sampler, LengthGroupedSampler)
    task = ClassificationTask(strategy="linear_probe", input_adapter=data.adapter.config(),
                              class_names=data.class_names)
    task.train()
    batch = next(iter(data.train_dataloader()))["input"]
    calls = []
    hook = task.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    first = task.features(batch)
    second = task.features(batch)
    hook.remove()
    distinct = len(torch.unique(batch))
    assert calls == [distinct]  # the second pass used the kept glyph features
    assert torch.allclose(first, second) if not task.sequence_pool.training else first.shape == second.shape
    assert len(task.glyph_memo.kept) == distinct
    assert task.hparams.input_adapter["layout"] == "glyphs"
    task.load_state_dict(task.state_dict())
    assert not task.glyph_memo.kept  # new weights: features computed again


def test_stochastic_prefix_runs_the_whole_backbone_without_retracing(monkeypatch) -> None:
    """A prefix with dropout has no fixed output to keep: every batch runs the backbone,
    and the split is worked out once per frozen-stage count, not once per batch."""
    import xmodal.feature_cache as feature_cache

    data = _sample_data()
    data.setup("fit")
    task = ClassificationTask(strategy="linear_probe", input_adapter=data.adapter.config(),
                              class_names=data.class_names)
    task.backbone.drop_rate = 0.2  # dropout before the classifier: inside a linear probe's prefix
    task.train()
    splits = []
    real_split = feature_cache.PrefixSplit
    monkeypatch.setattr(feature_cache, "PrefixSplit",
                        lambda *args: splits.append(1) or real_split(*args))
    batch = next(iter(data.train_dataloader()))["input"]
    calls = []
    hook = task.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    for _ in range(3):
        task.features(batch)
    hook.remove()
    distinct = len(torch.unique(batch))
    assert splits == [1] and calls == [distinct] * 3
    assert not task.glyph_memo.kept


def test_frozen_stages_run_once_per_glyph_and_match_the_full_backbone() -> None:
    data = _sample_data()
    data.setup("fit")
    task = ClassificationTask(freeze=3, input_adapter=data.adapter.config(),
                              class_names=data.class_names, feature_cache=False)
    task.eval()
    batch = next(iter(data.val_dataloader()))["input"]
    with torch.no_grad():
        memo = task.features(batch)
        stem_calls = []
        hook = task.backbone.conv_stem.register_forward_hook(lambda m, i, o: stem_calls.append(1))
        again = task.features(batch)
        hook.remove()
        task.glyph_memo.clear()
        task.glyph_memo.features = lambda backbone, to_image, distinct: backbone(to_image(distinct))
        full = task.features(batch)
    assert not stem_calls  # the frozen stem and stages 1-3 did not run again
    task.glyph_memo = type(task.glyph_memo)()
    task.train()  # training: the trainable stages' BatchNorm sees the batch's glyphs
    assert task.features(batch).requires_grad
    assert torch.allclose(memo, again) and torch.allclose(memo, full, atol=1e-4)


def test_short_fit_learns_spam_from_glyphs(tmp_path) -> None:
    """A linear probe on the packaged 600-message sample: the held-out macro-F1 must
    beat always-ham (0.47)."""
    pl.seed_everything(0)
    data = _sample_data(per_class=None)
    task = ClassificationTask(strategy="linear_probe", lr=3e-3, sequence_hidden=64,
                              early_stopping_patience=None, restore_best=False)
    trainer = pl.Trainer(max_epochs=10, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    result = trainer.validate(task, datamodule=data, verbose=False)[0]
    assert result["val/f1"] > 0.7, result
    loaded = _assert_checkpoint_reloads(trainer, task, data, tmp_path / "glyphs.ckpt")
    from xmodal.export import export_model

    with pytest.raises(ConfigError, match="glyphs"):
        export_model(loaded, tmp_path / "g.onnx")


def _fit_val_f1(data: XModalDataModule, tmp_path: Path, **options) -> float:
    """Validation macro-F1 of a 10-epoch linear probe on ``data`` with ``options``."""
    task = ClassificationTask(strategy="linear_probe", lr=3e-3, sequence_hidden=64,
                              early_stopping_patience=None, restore_best=False, **options)
    trainer = pl.Trainer(max_epochs=10, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    return trainer.validate(task, datamodule=data, verbose=False)[0]["val/f1"]


def test_adversarial_copy_raises_the_loss_and_trains(tmp_path) -> None:
    """The adversarial copy moves the character vectors uphill: its loss is above the
    clean loss, by more the further it moves; a fit with it learns."""
    pl.seed_everything(0)
    data = _sample_data(per_class=None)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    losses = {}
    for size in (0.0, 0.05, 0.5):
        task = ClassificationTask(strategy="linear_probe", sequence_hidden=32, adversarial=size,
                                  input_adapter=data.adapter.config(), class_names=data.class_names)
        if size:
            task.load_state_dict(state)
        state = task.state_dict()
        task.eval()  # no dropout: the two copies differ by the move alone
        loss_fn = lambda out: torch.nn.functional.cross_entropy(out, batch["label"])  # noqa: E731
        total, outputs = task.adversarial_loss(batch["input"], loss_fn)
        clean = loss_fn(task(batch["input"]))
        assert torch.allclose(loss_fn(outputs), clean, atol=1e-6)  # the outputs are the clean batch's
        losses[size] = (total - clean).item()  # the adversarial copy's loss
        if size == 0.0:
            assert losses[size] == pytest.approx(clean.item(), abs=1e-6)
    assert losses[0.0] < losses[0.05] < losses[0.5]
    assert _fit_val_f1(data, tmp_path, adversarial=0.1) > 0.7
    with pytest.raises(ValueError, match="adversarial must be >= 0"):
        ClassificationTask(adversarial=-1.0)
    from xmodal.tasks.hashing import HashingTask

    with pytest.raises(ConfigError, match="not for hashing"):
        HashingTask(adversarial=0.1)


def _texts(codes: torch.Tensor) -> list[str]:
    return ["".join(chr(c) for c in row if c) for row in codes.tolist()]


def test_typo_noise_drops_and_swaps_characters() -> None:
    adapter = glyphs(max_chars=64)
    texts = ["the quick brown fox jumps over the lazy dog", "不太好，房间很小", "a"]
    codes = torch.stack([adapter.decode(t) for t in texts])
    assert torch.equal(typo_noise(codes, 0.0), codes)
    noisy = typo_noise(codes, 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, typo_noise(codes, 0.6, torch.Generator().manual_seed(0)))
    assert noisy.shape == codes.shape and noisy.dtype == codes.dtype
    for before, after, row in zip(texts, _texts(noisy), noisy):
        real = (row != 0).int()
        assert torch.equal(real, real.sort(descending=True).values)  # padding stays at the end
        assert after[0] in before[:2] and len(after) <= len(before)  # never empty
        assert set(after) <= set(before)  # characters dropped or moved, none new
    assert _texts(noisy)[2] == "a"  # a one-character text keeps its character
    assert _texts(noisy)[:2] != texts[:2]
    # rate r: about r/2 of the characters dropped, r/2 swapped with their neighbour
    # (rows of increasing code points, so a swap shows as a decreasing neighbour pair)
    rows = (0x4E00 + torch.arange(80)).repeat(200, 1)
    rows = torch.cat([rows, torch.zeros(200, 20, dtype=rows.dtype)], dim=1)
    noisy = typo_noise(rows, 0.2, torch.Generator().manual_seed(1))
    real = (rows != 0).sum().item()
    assert 0.08 < 1 - (noisy != 0).sum().item() / real < 0.12
    swaps = ((noisy[:, 1:] < noisy[:, :-1]) & (noisy[:, 1:] != 0)).sum().item()
    assert 0.07 < swaps / real < 0.11


def test_typo_noise_trains_only(tmp_path) -> None:
    """``typo_noise`` shortens and reorders the training batch's texts, never the
    evaluated ones; a fit with it learns."""
    pl.seed_everything(0)
    data = _sample_data(per_class=None)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))["input"]
    task = ClassificationTask(strategy="linear_probe", sequence_hidden=32, typo_noise=0.5,
                              input_adapter=data.adapter.config(), class_names=data.class_names)
    task.eval()
    _, keep = task._glyph_vectors(batch)
    assert keep.sum().item() == (batch != 0).sum().item()
    assert torch.equal(task(batch), task(batch))
    task.train()
    _, noisy_keep = task._glyph_vectors(batch)
    assert 0.6 < noisy_keep.sum().item() / keep.sum().item() < 0.9  # a quarter dropped
    assert _fit_val_f1(data, tmp_path, typo_noise=0.1) > 0.7
    with pytest.raises(ValueError, match="typo_noise must be in"):
        ClassificationTask(typo_noise=1.0)


def test_typo_consistency_pulls_the_typod_copy_towards_the_clean_prediction(tmp_path) -> None:
    """With ``typo_consistency`` the training texts stay clean; the added term is the KL
    divergence of the typo'd copy's prediction from the clean one (zero without typos,
    positive with them), and a fit with it learns."""
    pl.seed_everything(0)
    data = _sample_data(per_class=None)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))["input"]
    task = ClassificationTask(strategy="linear_probe", sequence_hidden=32, typo_noise=0.3,
                              typo_consistency=2.0, dropout=0.0,
                              input_adapter=data.adapter.config(), class_names=data.class_names)
    task.train()
    task.sequence_pool.drop.p = 0.0  # no dropout: the copies differ by their typos alone
    _, keep = task._glyph_vectors(batch)
    assert keep.sum().item() == (batch != 0).sum().item()  # the clean batch stays clean
    logits = task(batch)
    torch.manual_seed(0)
    term = task.typo_consistency_loss(batch, logits)
    assert term.item() > 0 and term.requires_grad
    task.hparams.typo_noise = 1e-9  # (almost) no typos: the copies agree
    assert task.typo_consistency_loss(batch, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert _fit_val_f1(data, tmp_path, typo_noise=0.1, typo_consistency=1.0) > 0.7
    with pytest.raises(ConfigError, match="typo_consistency needs typo_noise"):
        ClassificationTask(typo_consistency=1.0)
    from xmodal.tasks.hashing import HashingTask

    with pytest.raises(ConfigError, match="not for hashing"):
        HashingTask(typo_noise=0.1, typo_consistency=1.0)


def test_feature_cache_is_off_for_glyphs() -> None:
    from xmodal.feature_cache import FeatureCache

    data = _sample_data()
    data.setup("fit")
    task = ClassificationTask(freeze=4, input_adapter=data.adapter.config(),
                              class_names=data.class_names)
    trainer = pl.Trainer(max_epochs=3, logger=False)
    assert "glyph" in FeatureCache("auto").reason_off(trainer, task)


def _text_of(data: XModalDataModule, index: int) -> str:
    """A decoded training text (its code points, padding left out)."""
    return "".join(chr(code) for code in np.asarray(data.datasets["train"].array[index]).tolist() if code)
