"""FID and the Inception Score on the FID Inception (``impls.spec.inception_v3``, variant ``fid``)
in PyTorch, Flax NNX or Keras 3, fed by the same weight file as pytorch-fid and torch-fidelity.
See docs/fid.md."""
from .api import features_of, fid, inception_score_of, statistics
from .distance import Distance, frechet_distance, inception_score
from .features import DIMS, Extractor
from .stats import RunningStatistics, Statistics

__all__ = ["DIMS", "Distance", "Extractor", "RunningStatistics", "Statistics", "features_of", "fid",
           "frechet_distance", "inception_score", "inception_score_of", "statistics"]
