"""Binary codes: packing bits into bytes, Hamming distances, untrained hashers.

Codes are stored MSB-first as ``uint8`` rows (``np.packbits``), the layout FAISS's
binary indexes use, so one packed array serves both backends. A ``K``-bit code takes
``K / 8`` bytes: 64 bits are 8 bytes against 2048 bytes for 512 float32 values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.errors import ConfigError

#: popcount of every byte value, for NumPy versions without ``np.bitwise_count``.
POPCOUNT8 = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def binarize(values: np.ndarray) -> np.ndarray:
    """Sign of real values as ``{0, 1}`` bits (``> 0`` is 1): tanh/sigmoid-centred latents."""
    return (np.asarray(values) > 0).astype(np.uint8)


def pack_codes(bits: np.ndarray) -> np.ndarray:
    """``(N, K)`` bits (0/1 or bool, or real values thresholded at 0) -> ``(N, K/8)`` uint8.

    Raises:
        ConfigError: when ``K`` is not a multiple of 8.
    """
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ConfigError(f"codes must be a 2-D array (items, bits), not shape {bits.shape}")
    if bits.shape[1] % 8:
        raise ConfigError(f"code length must be a multiple of 8 bits, not {bits.shape[1]}")
    if bits.dtype != np.uint8 and bits.dtype != bool:
        bits = binarize(bits)
    return np.packbits(bits.astype(bool), axis=1)


def unpack_codes(packed: np.ndarray) -> np.ndarray:
    """``(N, K/8)`` uint8 -> ``(N, K)`` 0/1 uint8 bits."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1)


def as_uint64(packed: np.ndarray) -> np.ndarray:
    """View packed codes as ``uint64`` words (``K`` a multiple of 64), 8x fewer popcounts."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if packed.shape[1] % 8:
        raise ConfigError(f"uint64 words need codes of a multiple of 64 bits, not {packed.shape[1] * 8}")
    return packed.view(np.uint64)


def popcount(words: np.ndarray) -> np.ndarray:
    """Bits set per element: ``np.bitwise_count`` (NumPy >= 2) or a byte lookup table."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, -1)
    return POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.uint32)


def hamming_distances(queries: np.ndarray, database: np.ndarray, chunk: int = 262144) -> np.ndarray:
    """All Hamming distances ``(Q, N)`` between packed uint8 codes, in NumPy.

    XORs 64-bit words when the code length allows it (8x fewer operations than bytes)
    and works through the database in chunks so memory stays bounded.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.uint8))
    database = np.asarray(database, dtype=np.uint8)
    if queries.shape[1] != database.shape[1]:
        raise ConfigError(f"query codes have {queries.shape[1] * 8} bits, the index {database.shape[1] * 8}")
    if database.shape[1] % 8 == 0:
        q, d = as_uint64(queries), as_uint64(database)
    else:
        q, d = queries, database
    out = np.empty((q.shape[0], d.shape[0]), dtype=np.uint16)
    for start in range(0, d.shape[0], chunk):
        block = d[start:start + chunk]
        for i in range(q.shape[0]):
            counts = popcount(block ^ q[i])
            out[i, start:start + block.shape[0]] = counts[:, 0] if counts.shape[1] == 1 else \
                counts.sum(axis=1, dtype=np.uint16)
    return out


def _itq_rotation(projected: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """Orthogonal ``R`` minimising ``||sign(V R) - V R||`` by alternating updates (ITQ)."""
    rng = np.random.default_rng(seed)
    bits = projected.shape[1]
    rotation, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
    for _ in range(iterations):
        codes = np.where(projected @ rotation >= 0, 1.0, -1.0)
        left, _, right_t = np.linalg.svd(codes.T @ projected)
        rotation = (left @ right_t).T
    return rotation


@dataclass
class ProjectionHasher:
    """Untrained codes: the sign of a projection of (centred) pooled features.

    ``method="pca"`` projects on the top principal directions (the classic PCA-hashing
    baseline, no labels needed); ``"itq"`` rotates those directions to minimise the
    quantisation error (Gong & Lazebnik 2011, iterative quantisation), which spreads
    variance evenly over the bits; ``"random"`` uses Gaussian directions (LSH for
    cosine, Charikar 2002). All subtract the fitted mean first so bits are balanced.

    Attributes:
        mean: ``(D,)`` feature mean.
        projection: ``(D, K)`` projection matrix.
    """

    mean: np.ndarray
    projection: np.ndarray
    method: str = "pca"

    @classmethod
    def fit(cls, features: np.ndarray, bits: int = 64, method: str = "pca", seed: int = 0,
            iterations: int = 50) -> "ProjectionHasher":
        """Fit on ``(N, D)`` features (PCA/ITQ need ``N >= bits``; random only uses the mean)."""
        features = np.asarray(features, dtype=np.float64)
        if bits % 8 or bits <= 0:
            raise ConfigError(f"bits must be a positive multiple of 8, not {bits}")
        mean = features.mean(axis=0)
        if method == "random":
            rng = np.random.default_rng(seed)
            projection = rng.standard_normal((features.shape[1], bits))
        elif method in ("pca", "itq"):
            if bits > min(features.shape):
                raise ConfigError(f"{method.upper()} hashing to {bits} bits needs at least {bits} items "
                                  f"and features; got {features.shape}. Use method='random'.")
            _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
            projection = vt[:bits].T
            if method == "itq":
                projection = projection @ _itq_rotation((features - mean) @ projection, iterations, seed)
        else:
            raise ConfigError(f"projection method must be pca, itq or random, not {method!r}")
        return cls(mean.astype(np.float32), projection.astype(np.float32), method)

    @property
    def bits(self) -> int:
        return int(self.projection.shape[1])

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Real-valued projections ``(N, K)`` (their sign is the code)."""
        return (np.asarray(features, dtype=np.float32) - self.mean) @ self.projection

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Packed ``uint8`` codes ``(N, K/8)``."""
        return pack_codes(binarize(self.transform(features)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, mean=self.mean, projection=self.projection, method=np.array(self.method))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ProjectionHasher":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["mean"], data["projection"], str(data["method"]))
