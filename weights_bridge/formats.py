"""File formats by name, detection by extension, and conversion through canonical form.

Each framework is imported only when its format is used. Conversions run in one process:
torch, jax and tensorflow coexist in any order; torchvision and timm are never imported here
(importing them after tensorflow crashes the process).
"""
from __future__ import annotations

import sys
import time

from . import flax_io, keras_archive, keras_io, neutral, orbax_io, presets, torch_io
from .peers import fid_inception, keras_applications, pretrainedmodels, timm
from .atomic import check_destination
from .errors import BridgeError, InputFileError, WeightsMismatchError
from .extras import require
from .mapping import check_canonical

FORMATS = {
    "safetensors": neutral,  # the neutral folder: model.safetensors + config.json
    "torch": torch_io,
    "flax": flax_io,
    "orbax": orbax_io,  # a folder: Flax NNX state saved by Orbax's StandardCheckpointer
    "keras": keras_io,
    "keras-archive": keras_archive,  # .keras: our Keras model, keras.saving.load_model's format
    # Peer libraries' own files, chosen with --from/--to: timm's state_dict and keras.applications
    # InceptionV3's / InceptionResNetV2's .weights.h5 / legacy .h5 / .keras.
    "timm": timm,
    "keras-applications": keras_applications,
    # pretrainedmodels' bninception (the Caffe BN-Inception): bn_inception, variant "caffe".
    "pretrainedmodels": pretrainedmodels,
    # The FID Inception's file, as pytorch-fid and torch-fidelity load it: inception_v3, variant "fid".
    "pytorch-fid": fid_inception,
    "torch-fidelity": fid_inception,
}
EXTENSIONS = ((".weights.h5", "keras"), (".keras", "keras-archive"), (".pth", "torch"), (".pt", "torch"),
              (".msgpack", "flax"), (".orbax", "orbax"))
# The file (or folder) name ending each format's files take when the bridge names them.
SUFFIX = {"safetensors": ".neutral", "torch": ".pth", "flax": ".msgpack", "orbax": ".orbax", "keras": ".weights.h5",
          "keras-archive": ".keras", "timm": ".pth", "keras-applications": ".weights.h5", "pretrainedmodels": ".pth",
          "pytorch-fid": ".pth", "torch-fidelity": ".pth"}


def detect(path) -> str:
    """The format of ``path`` by its name's ending, else by its layout (an Orbax folder), else
    the neutral folder."""
    name = str(path).lower().rstrip("/")
    for ext, fmt in EXTENSIONS:
        if name.endswith(ext):
            return fmt
    if name.endswith(".h5"):
        raise InputFileError(f"{path}: Keras weight files must end in .weights.h5 (Keras 3's weights format); "
                             f"a keras.applications InceptionV3 / InceptionResNetV2 file is read with "
                             f"--from keras-applications")
    return "orbax" if orbax_io.is_checkpoint(path) else "safetensors"


def _format(path, fmt):
    fmt = fmt or detect(path)
    if fmt not in FORMATS:
        raise InputFileError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return fmt


def required_modules(fmt) -> tuple:
    """The modules that reading or writing ``fmt`` imports."""
    return tuple(getattr(FORMATS[fmt], "REQUIRES", ()))


def require_format(fmt, path, reading=True):
    """Refuses (exit 2, naming the extra to install) a format whose framework is not installed."""
    require(f"{'reading' if reading else 'writing'} {path} as {fmt}", required_modules(fmt))


def source_format(path, fmt=None) -> str:
    """The format a source file is read as: ``fmt``, or by its name or layout."""
    return _format(path, fmt)


def read(path, fmt=None, architecture=None, allow_nonfinite=False, variant=None):
    """``variant`` names the checkpoint facts of a native file that cannot record them (a .pth
    holding a keras-variant Inception v3); a neutral folder's or a peer file's own must agree."""
    fmt = source_format(path, fmt)
    require_format(fmt, path)
    if not architecture and not getattr(FORMATS[fmt], "RECORDS_ARCHITECTURE", False):
        raise BridgeError(f"{path}: a {fmt} file does not record its architecture; name it (--arch)")
    ckpt = FORMATS[fmt].read(path, architecture, allow_nonfinite=allow_nonfinite)
    if variant and variant != ckpt.variant:
        # A variant with its own tensors (bn_inception's "caffe": conv biases) is read off the file.
        if getattr(FORMATS[fmt], "RECORDS_VARIANT", False) or ckpt.variant != "default":
            raise WeightsMismatchError(f"{path}: is a {ckpt.variant!r}-variant checkpoint, not {variant!r}")
        ckpt.variant = variant
        check_canonical(ckpt.tensors, ckpt.expected_shapes(), f"{path} (as variant {variant!r})",
                        allow_nonfinite=True)  # an unknown variant, or one with other tensors, fails here
    return ckpt


def write(ckpt, path, fmt=None, overwrite=False):
    fmt = _format(path, fmt)
    require_format(fmt, path, reading=False)
    return FORMATS[fmt].write(ckpt, path, overwrite=overwrite)


def convert(src, dst, architecture=None, src_format=None, dst_format=None, overwrite=False,
            allow_nonfinite=False, progress=None, variant=None, preset=None, facts=None):
    """Reads ``src``, checks it against the architecture, writes ``dst``; returns the checkpoint.
    ``preset`` (``presets.PRESETS``: the facts of a published weight set) and ``facts``
    (transform_input, input_size, mean, std, ...) state what the source file cannot record."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    src_format, dst_format = source_format(src, src_format), _format(dst, dst_format)
    require_format(src_format, src)  # both sides' frameworks before any work
    require_format(dst_format, dst, reading=False)
    presets.check_facts(facts, str(src))  # a misspelt name or a std of 0 fails before the read
    if preset:  # the preset's weights fix the variant
        presets.check_name(preset)
        variant = presets.variant_for(preset, architecture, variant) if architecture else variant
    check_destination(dst, overwrite)  # fail before the (possibly slow) read; written atomically later
    say(f"reading {src} as {src_format}")
    ckpt = presets.apply(read(src, src_format, architecture, allow_nonfinite, variant), preset, facts, str(src))
    nbytes = sum(a.nbytes for a in ckpt.tensors.values())
    say(f"  {ckpt.architecture}: {len(ckpt.tensors)} tensors, {nbytes / 1e6:.1f} MB, num_classes={ckpt.num_classes}, "
        f"aux_logits={ckpt.aux_logits}, variant={ckpt.variant} ({time.perf_counter() - t0:.1f} s)")
    if preset or facts:
        say("  facts: " + ", ".join(f"{k}={v}" for k, v in ckpt.all_facts().items() if k != "padding_convention")
            + (f" (preset {preset})" if preset else ""))
    lost = ckpt.facts_beyond_tensors() if dst_format != "safetensors" else {}
    if lost:
        say(f"  note: a {dst_format} file holds tensors only; state these again when reading it: "
            + ", ".join(f"{k}={v}" for k, v in lost.items()))
    say(f"writing {dst} as {dst_format}")
    write(ckpt, dst, dst_format, overwrite)
    say(f"  done ({time.perf_counter() - t0:.1f} s{_peak_rss()})")
    return ckpt


def _peak_rss() -> str:
    """', peak RSS N MB' of this process (imports included), where the platform reports it."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    except (ImportError, OSError):
        return ""
    return f", peak RSS {kb * (1 if sys.platform == 'darwin' else 1024) / 1e6:.0f} MB"


def stderr_progress(msg):
    print(msg, file=sys.stderr, flush=True)
