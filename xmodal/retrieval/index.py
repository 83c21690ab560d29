"""A Hamming-distance index over packed binary codes, with an optional cosine re-rank.

FAISS's exhaustive binary index (``IndexBinaryFlat``, SIMD popcount) is used when
``faiss-cpu`` is installed (``pip install faiss-cpu``); otherwise the same search runs
in NumPy. Both backends return identical distances; among equal distances the
order may differ, which is why results carry the distances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xmodal.errors import ConfigError
from xmodal.retrieval.codes import ProjectionHasher, hamming_distances, pack_codes

BACKENDS = ("auto", "faiss", "numpy")
FORMAT_VERSION = 1


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class SearchResult:
    """Nearest items of one query, best first.

    Attributes:
        indices: positions in the index.
        distances: Hamming distances in bits.
        names: the items' paths or names.
        cosine: cosine similarity to the query's float vector (after a re-rank).
        labels: the items' labels when the index has them.
    """

    indices: list[int]
    distances: list[int]
    names: list[str]
    cosine: list[float] | None = None
    labels: list[str] | None = None

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for rank, (index, dist, name) in enumerate(zip(self.indices, self.distances, self.names), 1):
            row: dict[str, Any] = {"rank": rank, "index": index, "name": name, "hamming": dist}
            if self.cosine is not None:
                row["cosine"] = round(self.cosine[rank - 1], 6)
            if self.labels is not None:
                row["label"] = self.labels[rank - 1]
            out.append(row)
        return out


@dataclass
class HammingIndex:
    """Packed codes with the names (paths) they belong to, searchable by Hamming distance.

    Args:
        codes: ``(N, K/8)`` uint8 packed codes (see :func:`pack_codes`).
        names: one name (usually the file path) per code.
        labels: optional label per code, kept for reports and evaluation.
        vectors: optional ``(N, D)`` float vectors for the cosine re-rank.
        backend: ``auto`` (FAISS when installed), ``faiss`` or ``numpy``.
        meta: free-form settings saved with the index (model, layer, bits ...).
        hasher: the projection that turns float vectors into these codes (untrained
            codes); ``None`` when codes are the sign of the vectors (hashing heads).
    """

    codes: np.ndarray
    names: list[str]
    labels: list[str] | None = None
    vectors: np.ndarray | None = None
    backend: str = "auto"
    meta: dict[str, Any] = field(default_factory=dict)
    hasher: ProjectionHasher | None = None

    def __post_init__(self) -> None:
        self.codes = np.ascontiguousarray(self.codes, dtype=np.uint8)
        if self.codes.ndim != 2:
            raise ConfigError(f"codes must be (items, bytes), not shape {self.codes.shape}")
        if len(self.names) != len(self.codes):
            raise ConfigError(f"{len(self.codes)} codes but {len(self.names)} names")
        if self.labels is not None and len(self.labels) != len(self.codes):
            raise ConfigError(f"{len(self.codes)} codes but {len(self.labels)} labels")
        if self.vectors is not None:
            self.vectors = _normalise(np.asarray(self.vectors, dtype=np.float32))
            if len(self.vectors) != len(self.codes):
                raise ConfigError(f"{len(self.codes)} codes but {len(self.vectors)} vectors")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend == "faiss" and not faiss_available():
            raise ConfigError("backend 'faiss' needs `pip install faiss-cpu`")
        if self.backend == "auto":
            self.backend = "faiss" if faiss_available() else "numpy"
        self._faiss: Any = None

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_bits(cls, bits: np.ndarray, names: Sequence[str], **kwargs: Any) -> "HammingIndex":
        """Build from unpacked 0/1 bits or real latents (thresholded at 0)."""
        return cls(pack_codes(bits), list(names), **kwargs)

    @property
    def bits(self) -> int:
        return int(self.codes.shape[1] * 8)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def nbytes(self) -> int:
        """Bytes the codes take (what a deployment keeps in memory)."""
        return int(self.codes.nbytes)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Packed codes for float vectors the way this index's codes were made."""
        if self.hasher is not None:
            return self.hasher.encode(vectors)
        return pack_codes(np.asarray(vectors, dtype=np.float32))

    # -- search -----------------------------------------------------------------------

    def _faiss_index(self) -> Any:
        if self._faiss is None:
            import faiss

            self._faiss = faiss.IndexBinaryFlat(self.bits)
            self._faiss.add(self.codes)
        return self._faiss

    def knn(self, query_codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)``, each ``(Q, k)``, nearest first by Hamming distance."""
        query_codes = np.atleast_2d(np.ascontiguousarray(query_codes, dtype=np.uint8))
        if query_codes.shape[1] != self.codes.shape[1]:
            raise ConfigError(f"query codes have {query_codes.shape[1] * 8} bits, "
                              f"the index {self.bits}")
        k = min(int(k), len(self))
        if k <= 0:
            raise ConfigError("k must be at least 1 and the index must not be empty")
        if self.backend == "faiss":
            import faiss

            threads = faiss.omp_get_max_threads()
            if len(query_codes) < 16:  # OpenMP start-up and spinning cost more than one scan
                faiss.omp_set_num_threads(1)
            try:
                distances, indices = self._faiss_index().search(query_codes, k)
            finally:
                faiss.omp_set_num_threads(threads)
            return distances.astype(np.int64), indices.astype(np.int64)
        return _numpy_knn(query_codes, self.codes, k)

    def search(
        self,
        query_codes: np.ndarray,
        k: int = 10,
        query_vectors: np.ndarray | None = None,
        rerank: int = 0,
        exclude: Sequence[int] | None = None,
    ) -> list[SearchResult]:
        """Nearest items per query, optionally re-ranked by cosine on float vectors.

        Args:
            query_codes: ``(Q, K/8)`` packed query codes.
            k: results per query.
            query_vectors: ``(Q, D)`` float query vectors, needed for ``rerank``.
            rerank: fetch this many Hamming candidates (at least ``k``) and order them
                by cosine similarity; 0 keeps the Hamming order.
            exclude: per query, an index position to leave out (the query itself when
                it is part of the index, as in leave-one-out evaluation).
        """
        if rerank and (query_vectors is None or self.vectors is None):
            raise ConfigError("a cosine re-rank needs float vectors for the queries and the index "
                              "(build the index with --vectors / vectors=...)")
        extra = 1 if exclude is not None else 0
        fetch = max(k, rerank) + extra
        distances, indices = self.knn(query_codes, fetch)
        results = []
        for q in range(len(indices)):
            idx, dist = indices[q], distances[q]
            keep = idx >= 0
            if exclude is not None:
                keep &= idx != exclude[q]
            idx, dist = idx[keep], dist[keep]
            cosine = None
            if rerank:
                query = _normalise(np.asarray(query_vectors[q:q + 1], dtype=np.float32))[0]
                sims = self.vectors[idx] @ query
                order = np.argsort(-sims, kind="stable")
                idx, dist, sims = idx[order], dist[order], sims[order]
                cosine = [float(s) for s in sims[:k]]
            idx, dist = idx[:k], dist[:k]
            results.append(SearchResult(
                indices=[int(i) for i in idx], distances=[int(d) for d in dist],
                names=[self.names[i] for i in idx], cosine=cosine,
                labels=[self.labels[i] for i in idx] if self.labels is not None else None,
            ))
        return results

    # -- persistence ------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (codes, names, labels, vectors, settings); NumPy reads it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "codes": self.codes,
            "names": np.array(self.names, dtype=str),
            "meta": np.array(json.dumps({"format": FORMAT_VERSION, "bits": self.bits, **self.meta})),
        }
        if self.labels is not None:
            arrays["labels"] = np.array(self.labels, dtype=str)
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        if self.hasher is not None:
            arrays["hasher_mean"] = self.hasher.mean
            arrays["hasher_projection"] = self.hasher.projection
            arrays["hasher_method"] = np.array(self.hasher.method)
        np.savez(path, **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto") -> "HammingIndex":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"index file {path} not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                hasher = None
                if "hasher_mean" in data:
                    hasher = ProjectionHasher(data["hasher_mean"], data["hasher_projection"],
                                              str(data["hasher_method"]))
                return cls(
                    codes=data["codes"], names=[str(n) for n in data["names"]],
                    labels=[str(x) for x in data["labels"]] if "labels" in data else None,
                    vectors=data["vectors"] if "vectors" in data else None,
                    backend=backend, meta=meta, hasher=hasher,
                )
        except (KeyError, ValueError, OSError) as exc:
            raise ConfigError(f"{path} is not an xmodal index: {exc}") from None


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _numpy_knn(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive Hamming k-NN in NumPy; ties broken by index (stable)."""
    out_d = np.empty((len(queries), k), dtype=np.int64)
    out_i = np.empty((len(queries), k), dtype=np.int64)
    bits = database.shape[1] * 8
    for q in range(len(queries)):
        dist = hamming_distances(queries[q:q + 1], database)[0]
        # distances are small integers: a histogram finds the k-th smallest in one pass,
        # much faster than argpartition over millions of items
        cumulative = np.cumsum(np.bincount(dist, minlength=bits + 1))
        threshold = int(np.searchsorted(cumulative, k))
        candidates = np.flatnonzero(dist <= threshold)
        order = candidates[np.lexsort((candidates, dist[candidates]))][:k]
        out_i[q] = order
        out_d[q] = dist[order]
    return out_d, out_i
