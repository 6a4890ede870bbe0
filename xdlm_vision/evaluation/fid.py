"""FID / IS / precision-recall of generated images against a reference, with torch-fidelity features.

``score_images`` is the one function the CLI calls: it extracts Inception features of the
samples (streamed shard by shard), gets the reference statistics (read from an ADM ``.npz`` or
computed from reference images, cached under ``cache_dir`` by reference and weights checksum),
and returns the numbers. The IS uses torch-fidelity's ``logits_unbiased`` with 10 splits, as
torch-fidelity and the ADM evaluator do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdlm_vision.evaluation.frechet import GaussianStats, frechet_distance_stats, gaussian_stats
from xdlm_vision.evaluation.inception import InceptionExtractor, InceptionFeatures
from xdlm_vision.evaluation.inception_score import InceptionScore, inception_score, softmax
from xdlm_vision.evaluation.precision_recall import PrecisionRecall, precision_recall
from xdlm_vision.evaluation.references import Reference
from xdlm_vision.io import atomic_path

IS_SPLITS = 10


@dataclass
class ImageScores:
    fid: float
    inception_score: InceptionScore
    precision_recall: PrecisionRecall | None  # only when asked
    num_samples: int
    reference_stats_source: str  # "file" (mu/sigma read) or "computed" (from reference images)
    reference_num: int | None  # images behind the reference statistics (None when read from a file)


def features_of(extractor: InceptionExtractor, batches: Iterable[np.ndarray], batch_size: int) -> InceptionFeatures:
    """Concatenated Inception features of uint8 NHWC image batches."""
    pools, logits = [], []
    for images in batches:
        f = extractor(images, batch_size=batch_size)
        pools.append(f.pool)
        logits.append(f.logits)
    return InceptionFeatures(np.concatenate(pools), np.concatenate(logits))


def reference_features(reference: Reference, extractor: InceptionExtractor, weights_sha256: str,
                       cache_dir: Path | None, batch_size: int, progress: bool = False) -> np.ndarray:
    """Pool features (M, 2048) of the reference images, cached as ``reference_<sha>_<sha>.npy``."""
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"reference_{reference.sha256[:16]}_{weights_sha256[:16]}.npy"
        if cache.is_file():
            return np.load(cache, allow_pickle=False)
    pool = extractor(reference.images, batch_size=batch_size, progress=progress).pool  # (M, 2048)
    if cache is not None:
        with atomic_path(cache, suffix=".npy") as tmp:
            np.save(tmp, pool)
    return pool


def score_images(
    samples: InceptionFeatures,
    reference: Reference,
    extractor: InceptionExtractor,
    weights_sha256: str,
    *,
    want_precision_recall: bool = False,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    pr_k: int = 3,
    progress: bool = False,
) -> ImageScores:
    """FID, IS (and precision/recall) of sample features against ``reference``."""
    from xdlm_vision.errors import UserError

    fake_stats = gaussian_stats(samples.pool)
    ref_pool = None
    if reference.stats is not None:
        ref_stats: GaussianStats = reference.stats
        source, ref_num = "file", None
    else:
        ref_pool = reference_features(reference, extractor, weights_sha256, cache_dir, batch_size, progress)
        ref_stats, source, ref_num = gaussian_stats(ref_pool), "computed", int(ref_pool.shape[0])
    fid = frechet_distance_stats(fake_stats, ref_stats)
    isc = inception_score(softmax(samples.logits), splits=IS_SPLITS)
    pr = None
    if want_precision_recall:
        if ref_pool is None:
            if reference.images is None:
                raise UserError(f"--precision-recall needs reference images, but {reference.path} holds only mu/sigma")
            ref_pool = reference_features(reference, extractor, weights_sha256, cache_dir, batch_size, progress)
        pr = precision_recall(ref_pool, samples.pool, k=pr_k)
    return ImageScores(fid, isc, pr, int(samples.pool.shape[0]), source, ref_num)
