"""Embeddings, binary codes, Hamming search, the hashing head and ONNX export, at small scale."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.cli import main
from xmodal.retrieval import HammingIndex, ProjectionHasher, hamming_distances, map_at_k, pack_codes
from xmodal.retrieval import codes as codes_module
from xmodal.retrieval.index import faiss_available

ADAPTER = {"sample_rate": 8000, "duration": 0.5, "n_fft": 256, "hop_length": 64, "n_mels": 32}
BACKENDS = ["numpy"] + (["faiss"] if faiss_available() else [])


def brute_force(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Hamming distances the slow, obvious way: unpack and count differing bits."""
    q, d = np.unpackbits(queries, axis=1), np.unpackbits(database, axis=1)
    return (q[:, None, :] != d[None, :, :]).sum(axis=2)


# -- codes and search ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [16, 64, 256])
def test_pack_roundtrip_and_distances_match_brute_force(bits: int) -> None:
    rng = np.random.default_rng(bits)
    raw = rng.integers(0, 2, (300, bits), dtype=np.uint8)
    packed = pack_codes(raw)
    assert packed.dtype == np.uint8 and packed.shape == (300, bits // 8)
    assert np.array_equal(codes_module.unpack_codes(packed), raw)
    assert np.array_equal(hamming_distances(packed[:7], packed), brute_force(packed[:7], packed))
    assert np.array_equal(pack_codes(raw.astype(np.float32) - 0.5), packed)  # real latents: sign


def test_popcount_lookup_table_equals_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    words = np.random.default_rng(0).integers(0, 2**63, (50, 2), dtype=np.uint64)
    fast = codes_module.popcount(words)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert np.array_equal(codes_module.popcount(words), fast)
    assert int(codes_module.popcount(np.array([2**64 - 1], dtype=np.uint64))[0]) == 64


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_matches_brute_force(backend: str) -> None:
    rng = np.random.default_rng(1)
    database = pack_codes(rng.integers(0, 2, (1000, 64)))
    queries = pack_codes(rng.integers(0, 2, (5, 64)))
    index = HammingIndex(database, [f"item{i}" for i in range(1000)], backend=backend)
    distances, indices = index.knn(queries, 10)
    expected = np.sort(brute_force(queries, database), axis=1)[:, :10]
    assert np.array_equal(distances, expected)  # ties may order differently, distances may not
    truth = brute_force(queries, database)
    assert np.array_equal(np.take_along_axis(truth, indices, axis=1), distances)


def test_backends_agree_and_self_query_comes_first() -> None:
    rng = np.random.default_rng(2)
    database = pack_codes(rng.integers(0, 2, (500, 128)))
    results = {}
    for backend in BACKENDS:
        index = HammingIndex(database, [str(i) for i in range(500)], backend=backend)
        hits = index.search(database[[3, 77]], k=5)
        assert [h.indices[0] for h in hits] == [3, 77] and [h.distances[0] for h in hits] == [0, 0]
        results[backend] = [h.distances for h in hits]
        left_out = index.search(database[[3]], k=5, exclude=[3])[0]
        assert 3 not in left_out.indices and len(left_out.indices) == 5
    assert len({json.dumps(v) for v in results.values()}) == 1


def test_cosine_rerank_and_save_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((200, 32)).astype(np.float32)
    hasher = ProjectionHasher.fit(vectors, bits=16, method="pca")
    index = HammingIndex(hasher.encode(vectors), [f"f{i}" for i in range(200)],
                         labels=[str(i % 4) for i in range(200)], vectors=vectors, hasher=hasher)
    query = vectors[10:11] + 0.01 * rng.standard_normal((1, 32)).astype(np.float32)
    hit = index.search(index.encode(query), k=5, query_vectors=query, rerank=50)[0]
    assert hit.indices[0] == 10 and hit.cosine[0] > 0.99
    assert hit.cosine == sorted(hit.cosine, reverse=True)
    loaded = HammingIndex.load(index.save(tmp_path / "codes.npz"), backend="numpy")
    assert loaded.names == index.names and loaded.labels == index.labels
    assert np.array_equal(loaded.codes, index.codes) and loaded.hasher is not None
    assert np.array_equal(loaded.encode(query), index.encode(query))


def test_projection_codes_are_balanced_and_preserve_neighbours() -> None:
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((4, 64)) * 3
    labels = np.repeat(np.arange(4), 50)
    feats = centres[labels] + rng.standard_normal((200, 64))
    scores = {}
    for method in ("pca", "itq", "random"):
        hasher = ProjectionHasher.fit(feats, bits=32, method=method)
        bits = codes_module.unpack_codes(hasher.encode(feats))
        assert 0.2 < bits.mean() < 0.8
        index = HammingIndex(hasher.encode(feats), [str(i) for i in range(200)], labels=[str(x) for x in labels])
        hits = index.search(hasher.encode(feats), k=10, exclude=list(range(200)))
        score = map_at_k([h.labels for h in hits], [str(x) for x in labels], k=10)
        scores[method] = score
    assert min(scores.values()) > 0.6, scores  # chance is 0.25
    assert scores["itq"] > scores["pca"], scores  # the rotation spreads variance over the bits


def test_map_at_k_known_values() -> None:
    assert map_at_k([["a", "a"]], ["a"], k=2) == 1.0
    assert map_at_k([["b", "a"]], ["a"], k=2, label_counts={"a": 1}) == pytest.approx(0.5)
    assert map_at_k([["b", "b"]], ["a"], k=2) == 0.0


# -- models on real FSDD clips ------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four clips per digit for training, two per digit for testing: real FSDD audio."""
    from tests.conftest import DATA

    recordings = DATA / "fsdd" / "recordings"
    if not recordings.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set XMODAL_DATA)")
    path = tmp_path_factory.mktemp("fsdd") / "fsdd.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for digit in range(10):
            for index, speaker in enumerate(["jackson", "nicolas", "theo", "yweweler", "george", "lucas"]):
                writer.writerow([recordings / f"{digit}_{speaker}_7.wav", digit, "train" if index < 4 else "test"])
    return path


def test_embed_writes_files_numpy_and_csv_read(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb"
    code = main(["embed", "--modality", "audio", "--adapter", json.dumps(ADAPTER), "--manifest",
                 str(manifest), "--split", "test", "--layer", "stage3", "-o", str(out)])
    assert code == 0
    vectors = np.load(out.with_suffix(".npy"))
    with out.with_suffix(".csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert vectors.shape == (20, 40) and vectors.dtype == np.float32  # lite0 stage 3 has 40 channels
    assert np.isfinite(vectors).all() and len(rows) == 20
    assert rows[0]["path"].endswith("0_george_7.wav") and rows[0]["label"] == "0" and rows[0]["split"] == "test"
    assert json.loads(out.with_suffix(".json").read_text())["layer"] == "stage3"
    pandas = pytest.importorskip("pandas")
    assert list(pandas.read_csv(out.with_suffix(".csv")).columns[:3]) == ["row", "path", "label"]


def test_embed_reports_bad_input(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    good = Path(next(csv.DictReader(manifest.open()))["path"])
    assert main(["embed", "--modality", "audio", "--adapter", json.dumps(ADAPTER), str(good), str(bad),
                 "-o", str(tmp_path / "e")]) == 0
    assert "skipped 1 unreadable" in capsys.readouterr().out
    assert np.load(tmp_path / "e.npy").shape[0] == 1
    assert main(["embed", "--modality", "audio", "--on-bad-file", "error", str(bad), "-o",
                 str(tmp_path / "f")]) == 2
    assert "broken.wav" in capsys.readouterr().err


@pytest.fixture(scope="module")
def hashing_checkpoint(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hashing head on a tiny random backbone, trained for a couple of steps."""
    import pytorch_lightning as pl

    from xmodal.data import XModalDataModule
    from xmodal.tasks.hashing import HashingTask

    folder = tmp_path_factory.mktemp("hashing")
    data = XModalDataModule(manifest=str(manifest), modality="audio", adapter=ADAPTER, batch_size=8,
                            num_workers=0, cache=False, val_fraction=0.25)
    model = HashingTask(backbone="test_efficientnet", pretrained=False, freeze="none", bits=32, lr=1e-2,
                        scheduler="none")
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)
    before = model.backbone.conv_stem.weight.detach().clone() if hasattr(model, "backbone") else None
    trainer.fit(model, datamodule=data)
    assert not torch.equal(before, model.backbone.conv_stem.weight.detach())
    assert np.isfinite(trainer.callback_metrics["train/loss"].item())
    path = folder / "hashing.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_hashing_head_learns_on_features() -> None:
    """With the backbone frozen, a few steps on pooled features lower the loss."""
    from xmodal.tasks.hashing import HashingTask

    torch.manual_seed(0)
    model = HashingTask(backbone="test_efficientnet", pretrained=False, bits=16, class_names=list("abcd"),
                        input_adapter={"modality": "audio", **ADAPTER}, freeze="all", dropout=0.0)
    labels = torch.arange(4).repeat(16)
    feats = torch.randn(4, model.num_features)[labels] + 0.3 * torch.randn(64, model.num_features)
    optimiser = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        terms, latent, _ = model.losses({"features": feats, "label": labels})
        loss = sum(terms.values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0] and latent.shape == (64, 16)
    assert set(terms) == {"quant", "balance", "cls"}


def test_hashing_head_standardises_positive_features() -> None:
    """Pooled ReLU features share a large positive mean: the head centres them, so a fresh
    latent layer already splits the items on most bits; without the norm it does not."""
    from xmodal.tasks.hashing import HashingTask

    balanced = {}
    for input_norm in (True, False):
        torch.manual_seed(1)
        model = HashingTask(backbone="test_efficientnet", pretrained=False, bits=32, class_names=list("ab"),
                            input_adapter={"modality": "audio", **ADAPTER}, freeze="all", dropout=0.0,
                            input_norm=input_norm)
        torch.manual_seed(0)  # all positive, mean far from 0, like post-ReLU6 pools
        feats = 6.0 + torch.rand(256, model.num_features)
        head = model.head.train()
        with torch.no_grad():
            for _ in range(50):  # the running statistics converge to the data's
                head(feats)
            head.eval()
            on = (head(feats) > 0).float().mean(dim=0)
            head.train()
            assert head(feats[:1]).shape == (1, 32)  # one item in training: running statistics
        balanced[input_norm] = int(((on > 0.1) & (on < 0.9)).sum())
    assert balanced[True] >= 28 and balanced[False] <= 8


def test_hashing_checkpoint_without_input_norm_still_loads(hashing_checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint saved before the head had its input norm loads as a plain head."""
    from xmodal.retrieval.embed import load_task

    state = torch.load(hashing_checkpoint, map_location="cpu", weights_only=True)
    assert "head.norm.running_mean" in state["state_dict"]
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("head.norm.")}
    state["hyper_parameters"].pop("input_norm", None)
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    task = load_task(old)
    assert task.head.norm is None and task.hparams.input_norm is False
    assert task(torch.zeros(2, 4000)).shape == (2, 32)


def test_index_and_search_with_a_hashing_checkpoint(hashing_checkpoint: Path, manifest: Path,
                                                    tmp_path: Path) -> None:
    index_path = tmp_path / "fsdd.index.npz"
    assert main(["index", "--checkpoint", str(hashing_checkpoint), "--manifest", str(manifest),
                 "--split", "train", "-o", str(index_path)]) == 0
    index = HammingIndex.load(index_path)
    # train minus the seeded 10 % validation hold-out (one clip per digit), as in training
    assert index.bits == 32 and len(index) == 30 and index.meta["codes"] == "learned"
    query = index.names[5]
    out = tmp_path / "hits.json"
    assert main(["search", query, "--index", str(index_path), "--k", "3", "--rerank", "20",
                 "--backend", "numpy", "--json", str(out)]) == 0
    hits = json.loads(out.read_text())["queries"][0]["results"]
    assert hits[0]["name"] == query and hits[0]["hamming"] == 0 and len(hits) == 3


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(hashing_checkpoint: Path, manifest: Path, tmp_path: Path, fmt: str) -> None:
    pytest.importorskip("onnxruntime")
    from xmodal.export import ExportWrapper, export_model, onnx_parity
    from xmodal.retrieval.embed import load_task

    task = load_task(hashing_checkpoint)
    path = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    info = export_model(task, path, fmt)
    assert info["input"] == "decoded" and info["output_dim"] == 32
    inputs = torch.stack([task.adapter.decode(row["path"]) for row in csv.DictReader(manifest.open())][:12])
    reference = ExportWrapper(task)
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path))
        assert torch.allclose(loaded(inputs), reference(inputs), atol=1e-4)
        return
    result = onnx_parity(path, reference, [inputs[:5], inputs[5:]])  # two batch sizes: dynamic batch
    assert result["items"] == 12 and result["max_abs_diff"] <= 1e-3
