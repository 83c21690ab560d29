"""The Python API of semantic-hashing search: build an index from inputs, query it.

>>> engine = SearchEngine.build(Sources, checkpoint="hashing.ckpt")   # doctest: +SKIP
>>> engine.search(["query.wav"], k=10)                                # doctest: +SKIP

Codes come from a trained :class:`~xmodal.tasks.hashing.HashingTask` (the sign of its
latent) or, without one, from the sign of a PCA/random projection of a pretrained
backbone's pooled features (fitted on the indexed items). The index remembers how it
was built, so a query needs only the index file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xmodal.data.scan import BadFiles
from xmodal.errors import ConfigError
from xmodal.retrieval.codes import ProjectionHasher
from xmodal.retrieval.embed import EmbedModel, build_embed_model, embed_items
from xmodal.retrieval.index import HammingIndex, SearchResult
from xmodal.retrieval.sources import Sources, from_paths


@dataclass
class SearchEngine:
    """A :class:`HammingIndex` and the model that encodes queries for it."""

    index: HammingIndex
    model: EmbedModel

    @classmethod
    def build(
        cls,
        sources: Sources | Sequence[str],
        checkpoint: str | None = None,
        adapter: dict[str, Any] | None = None,
        backbone: str | None = None,
        layer: str = "auto",
        bits: int = 64,
        projection: str = "itq",
        keep_vectors: bool = True,
        backend: str = "auto",
        batch_size: int = 64,
        num_workers: int = 0,
        on_bad_file: str = "skip",
        report: BadFiles | None = None,
    ) -> "SearchEngine":
        """Embed ``sources`` and index their codes.

        Args:
            sources: :class:`Sources` or paths of files/folders.
            checkpoint: a trained head; a hashing head gives learned codes.
            adapter: ``{"modality": ..., **settings}`` without a checkpoint.
            layer: embedding layer (``auto``: the hashing latent, else pooled features).
            bits: code length of the untrained projection codes.
            projection: ``itq``, ``pca`` or ``random`` for untrained codes.
            keep_vectors: store the float vectors for a cosine re-rank.
        """
        if not isinstance(sources, Sources):
            sources = from_paths(sources)
        if checkpoint is None:
            settings = {**sources.adapter_defaults, **(adapter or {})}
            settings.setdefault("modality", sources.modality)
            adapter = settings
        model = build_embed_model(checkpoint, adapter, backbone, layer=layer)
        vectors, items = embed_items(model, sources.items, batch_size, num_workers, on_bad_file, report)
        learned = model.info.get("task") == "HashingTask" and model.info.get("layer") == "head"
        hasher = None if learned else ProjectionHasher.fit(vectors, bits, projection)
        names = sources.class_names
        labels = None
        if any(item.label is not None for item in items):
            labels = ["" if i.label is None else (names[i.label] if names else str(i.label)) for i in items]
        meta = {**model.info, "adapter": model.adapter.config(), "codes": "learned" if learned else projection}
        index = HammingIndex(_codes(vectors, hasher),
                             [item.name for item in items], labels=labels,
                             vectors=vectors if keep_vectors else None, backend=backend,
                             meta=meta, hasher=hasher)
        return cls(index, model)

    @classmethod
    def load(cls, path: str | Path, checkpoint: str | None = None, backend: str = "auto") -> "SearchEngine":
        """Open a saved index and rebuild its query model from the settings it recorded."""
        index = HammingIndex.load(path, backend=backend)
        meta = index.meta
        model = build_embed_model(checkpoint or meta.get("checkpoint"), meta.get("adapter"),
                                  meta.get("backbone"), pretrained=meta.get("pretrained", True),
                                  layer=meta.get("layer", "auto"), pool=meta.get("pool", "avg"))
        return cls(index, model)

    def save(self, path: str | Path) -> Path:
        return self.index.save(path)

    def embed(self, sources: Sources | Sequence[str], **kwargs: Any) -> tuple[np.ndarray, list[str]]:
        """Float query vectors and the names of the inputs that decoded."""
        if not isinstance(sources, Sources):
            sources = from_paths(sources)
        vectors, items = embed_items(self.model, sources.items, **kwargs)
        return vectors, [item.name for item in items]

    def search(self, sources: Sources | Sequence[str], k: int = 10, rerank: int = 0,
               on_bad_file: str = "error") -> list[tuple[str, SearchResult]]:
        """``(query name, result)`` per query input, nearest first."""
        vectors, names = self.embed(sources, on_bad_file=on_bad_file)
        if rerank and self.index.vectors is None:
            raise ConfigError("this index holds no float vectors; rebuild it with vectors to re-rank")
        results = self.index.search(self.index.encode(vectors), k=k,
                                    query_vectors=vectors if rerank else None, rerank=rerank)
        return list(zip(names, results))


def _codes(vectors: np.ndarray, hasher: ProjectionHasher | None) -> np.ndarray:
    from xmodal.retrieval.codes import pack_codes

    if hasher is not None:
        return hasher.encode(vectors)
    return pack_codes(vectors)
