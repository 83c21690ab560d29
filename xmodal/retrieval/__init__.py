"""Embeddings, binary codes and Hamming search over any modality.

``embed`` turns inputs into float vectors, ``codes`` turns vectors into packed bits,
``index`` searches them by Hamming distance (FAISS when installed, numpy otherwise)
with an optional cosine re-rank, ``metrics`` scores retrieval (mAP@k).
"""

from xmodal.retrieval.codes import (
    ProjectionHasher,
    hamming_distances,
    pack_codes,
    unpack_codes,
)
from xmodal.retrieval.index import HammingIndex, SearchResult
from xmodal.retrieval.metrics import map_at_k

__all__ = [
    "HammingIndex",
    "ProjectionHasher",
    "SearchResult",
    "hamming_distances",
    "map_at_k",
    "pack_codes",
    "unpack_codes",
]
