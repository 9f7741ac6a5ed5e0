"""``inception-bridge fid`` and ``fid-stats``: FID (and the Inception Score) on the FID Inception
in one framework, in this process (``fid`` package)."""
from __future__ import annotations

import os

from weights_bridge.errors import OutputError, WeightsMismatchError
from weights_bridge.extras import require

from .. import registry
from .progress import Progress

FRAMEWORKS = ("torch", "flax", "keras")
MODES = ("tf1", "pytorch-fid", "clean")


def add_commands(sub, format_names):
    def common(p):
        p.add_argument("--framework", choices=FRAMEWORKS, default="torch",
                       help="which implementation computes the features (keras: on $KERAS_BACKEND, default tensorflow)")
        p.add_argument("--mode", choices=MODES, default="tf1",
                       help="input pipeline: tf1 (torch-fidelity: TF1 bilinear, default), pytorch-fid (torch "
                            "bilinear), clean (clean-fid: PIL bicubic)")
        p.add_argument("--dims", type=int, choices=(64, 192, 768, 2048), default=2048,
                       help="feature layer, as pytorch-fid's --dims (default 2048: pool3)")
        p.add_argument("--weights", help="the FID Inception's weights: pytorch-fid's pt_inception-2015-12-05 .pth, "
                                         "torch-fidelity's, or any format the bridge reads (default: the file "
                                         "pytorch-fid / torch-fidelity cached in torch.hub's folder)")
        p.add_argument("--from", dest="src_format", choices=format_names, help="format of --weights")
        p.add_argument("--batch-size", type=int, default=50)
        p.add_argument("--quiet", action="store_true", help="no progress")

    f = sub.add_parser("fid", help="Frechet Inception Distance between two image sets (folders of PNG/JPEG, .npz "
                                   "of uint8 images, or statistics .npz with mu and sigma)")
    f.add_argument("a")
    f.add_argument("b")
    common(f)
    f.add_argument("--isc", action="store_true", help="also the Inception Score (10 splits) of each image set")
    f.add_argument("--json", metavar="OUT", help="write the value and its settings as JSON here")
    f.set_defaults(func=cmd_fid)

    s = sub.add_parser("fid-stats", help="precompute an image set's statistics (pytorch-fid's .npz: mu, sigma)")
    s.add_argument("images")
    s.add_argument("out")
    common(s)
    s.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_fid_stats)


def _extractor(a):
    """The features of --framework; exit 2 naming its extra if it is not installed (statistics
    files alone need none)."""
    from fid import Extractor

    impl = {"torch": "torch", "flax": "flax", "keras": f"keras-{os.environ.get('KERAS_BACKEND', 'tensorflow')}"}
    needs = registry.IMPLEMENTATIONS.get(impl[a.framework], registry.get("keras-tensorflow")).requires
    require(f"fid --framework {a.framework}", needs)
    return Extractor(a.framework, a.mode, a.weights, a.src_format)


def cmd_fid(a):
    from fid import frechet_distance, inception_score
    from fid.api import features_of
    from fid.images import ImageSource, is_statistics
    from fid.stats import load

    if a.json:
        from weights_bridge.atomic import check_destination

        check_destination(a.json, overwrite=True)  # an unwritable --json fails before the work
    sources = {"a": a.a, "b": a.b}
    images = {k: None if is_statistics(p) else ImageSource(p) for k, p in sources.items()}  # bad input: now
    stats = {k: load(p) for k, p in sources.items() if images[k] is None}
    check_before_work(a, images, stats)
    extractor, counts, isc = None, {k: s.count or None for k, s in stats.items()}, {}
    for key, source in images.items():
        if source is None:
            continue
        extractor = extractor or _extractor(a)
        progress = None if a.quiet else Progress(f"{a.framework} features, {key}: {sources[key]}: images")
        stats[key], logits = features_of(source, extractor, a.dims, a.batch_size, isc=a.isc, progress=progress)
        counts[key] = stats[key].count
        if a.isc:
            isc[key] = dict(zip(("mean", "std"), inception_score(logits)))
    stats = [stats["a"], stats["b"]]
    distance = frechet_distance(*stats)
    print(f"FID: {distance.value:.6f}")
    for key, (mean, std) in ((k, (v["mean"], v["std"])) for k, v in isc.items()):
        print(f"Inception Score ({key}): {mean:.6f} +- {std:.6f}")
    if a.json:
        from ..agreement.matrix import write_json

        write_json(a.json, {"fid": distance.value, "sqrtm": {"method": distance.method, "residual": distance.residual},
                            "mode": a.mode, "framework": a.framework, "dims": a.dims, "images": counts,
                            "inception_score": isc or None,
                            "weights": str(extractor.weights) if extractor else a.weights})


def check_before_work(a, images, stats):
    """What would fail after minutes of features fails now: statistics of other --dims than the
    other side's, too few images for a covariance or for the Inception Score's splits."""
    if len(stats) == 2 and stats["a"].dims != stats["b"].dims:
        raise WeightsMismatchError(f"{a.a}: statistics of {stats['a'].dims} dimensions, {a.b}: of "
                                   f"{stats['b'].dims} dimensions; compute both with the same --dims")
    for key, s in stats.items():
        if any(v is not None for v in images.values()) and s.dims != a.dims:
            raise WeightsMismatchError(f"{getattr(a, key)}: statistics of {s.dims} dimensions, but --dims {a.dims} "
                                       f"for the images; compute both with the same --dims")
    from fid.api import SPLITS, check_images

    for source in images.values():
        if source is not None:
            check_images(source, SPLITS if a.isc else None)


def cmd_fid_stats(a):
    from pathlib import Path

    from fid.api import features_of
    from fid.images import ImageSource
    from fid.stats import save
    from weights_bridge.atomic import check_destination

    check_destination(a.out, a.overwrite)  # before minutes of features
    if not str(a.out).endswith(".npz"):
        raise OutputError(f"{a.out}: statistics are written as .npz (pytorch-fid's format); name it *.npz")
    source = ImageSource(a.images)
    stats, _ = features_of(source, _extractor(a), a.dims, a.batch_size,
                           progress=None if a.quiet else Progress(f"{a.framework} features, {a.images}: images"))
    save(stats, Path(a.out), overwrite=a.overwrite)
    print(f"{a.out}: mu {stats.mu.shape}, sigma {stats.sigma.shape} from {stats.count} images")
