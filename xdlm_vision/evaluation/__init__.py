"""Evaluation: FID/IS with a protocol card, NELBO with a standard error, digits metrics.

- :mod:`frechet`           Fréchet distance (eigen-decomposition, robust to singular covariances)
- :mod:`inception_score`   IS from class probabilities
- :mod:`precision_recall`  k-NN manifold precision/recall (Kynkäänniemi et al. 2019)
- :mod:`inception`         torch-fidelity's InceptionV3 from a local weights file (no download)
- :mod:`references`        reference sets by path (ADM .npz stats, image .npz/folders, CIFAR-10) + sha256
- :mod:`sample_shards`     resumable per-process sample shards (PNG or ADM .npz)
- :mod:`fid`               scoring samples against a reference
- :mod:`card`              the protocol card (versions, git commit) and atomic JSON
- :mod:`nelbo`             Monte-Carlo NELBO in bits per token with a standard error
- :mod:`digits_metrics`    classifier accuracy and digits-FID on the embedded digits data
- :mod:`digits_classifier` the frozen digits CNN (its own module)

Only numpy is imported here; torch-fidelity is imported when Inception features are needed.
"""
