"""One implementation's worker process: ``python -m conformance.worker JOB.json``.

Each worker imports exactly one framework (tensorflow before torchvision segfaults, and
KERAS_BACKEND is fixed at import), loads each task's weights the way a user of that framework
would (a converted native file, the framework's own loader), runs the batch and writes the
outputs to ``<out_dir>/<task id>.npz``. The parent compares the files.

Job JSON: {"impl": str, "out_dir": str, "tasks": [{"id", "arch", "mode": "eval"|"train",
"input": NCHW .npy, "weights": {"safetensors": folder, "torch": .pth, "flax": .msgpack,
"keras": .weights.h5}}]}. Models are built with dropout 0 so train-mode outputs are deterministic;
one model per architecture serves its eval tasks, and train tasks (which update BN statistics)
run last on a fresh copy.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

IMPLS = ("torch", "flax", "keras-tensorflow", "keras-jax", "keras-torch")
# peer -> architectures it has; a peer runs only on checkpoints of its variants (PEER_VARIANTS,
# default "default"): keras.applications' Inception v3 is the "keras" variant, the others are not.
PEERS = {"torchvision": ("googlenet", "inception_v3"), "timm": ("inception_v3", "inception_v4", "inception_resnet_v2"),
         "keras-applications": ("inception_v3", "inception_resnet_v2"), "pretrainedmodels": ("bn_inception",)}
PEER_VARIANTS = {"keras-applications": ("keras",), "pretrainedmodels": ("caffe",)}


def peer_fits(impl, arch, variant="default"):
    """Whether ``impl`` runs on a checkpoint of this architecture and variant (ours run on every one)."""
    if impl not in PEERS:
        return True
    return arch in PEERS[impl] and (variant or "default") in PEER_VARIANTS.get(impl, ("default",))


def _config(task):
    from weights_bridge.neutral import read_config
    from pathlib import Path

    return read_config(Path(task["weights"]["safetensors"]))


def _model_kwargs(task, cfg, peer_factory=None):
    """Constructor arguments from the checkpoint's config, every dropout set to 0; for a peer,
    only the arguments its constructor takes."""
    from impls.spec import model_spec

    kw = dict(num_classes=cfg["num_classes"], aux_logits=cfg["aux_logits"], transform_input=cfg["transform_input"],
              dropout=0.0)
    if any(hasattr(head, "dropout") for _, head in model_spec(task["arch"]).aux_heads.values()):
        kw["dropout_aux"] = 0.0
    if cfg.get("variant", "default") != "default":
        kw["variant"] = cfg["variant"]
    if peer_factory is not None:
        import inspect

        kw = {k: v for k, v in kw.items() if k in inspect.signature(peer_factory).parameters}
    return kw


def model_outputs_type(task, cfg):
    """The train-mode named tuple our model returns for this checkpoint."""
    from impls.spec import model_spec

    return model_spec(task["arch"], num_classes=cfg["num_classes"], aux_logits=cfg["aux_logits"],
                      variant=cfg.get("variant", "default")).outputs_type


class CachedModels:
    """One loaded model per architecture for eval tasks; a train task consumes it (its BN
    statistics change), so the next task of that architecture loads afresh."""

    def __init__(self):
        self._models = {}

    def model(self, task, cfg, x):
        key = task["arch"]
        if key not in self._models:
            self._models[key] = self.load(task, cfg, x)
        return self._models.pop(key) if task["mode"] == "train" else self._models[key]


def _block_names(arch):
    from impls.spec import model_spec

    return model_spec(arch).block_names()


def _outputs(out, fields):
    if not isinstance(out, tuple):
        return {"logits": out}
    return dict(zip(fields, out))


def _torch_fp64(model, x, train):
    import copy

    import torch

    twin = copy.deepcopy(model).double().train(train)
    with torch.no_grad():
        out = twin(torch.from_numpy(x).double().to(next(twin.parameters()).device))
    fields = out._fields if isinstance(out, tuple) else ("logits",)
    res = {k: v.cpu().numpy() for k, v in _outputs(out, fields).items()}
    if train:  # the fp64 twin's BN running statistics: their fp32 floor (conformance.matrix.fp32_floor)
        sd = twin.state_dict()
        res.update({f"stat:{k}": sd[k].cpu().numpy() for k in sd if k.endswith(("running_mean", "running_var"))})
    return res


class TorchRunner(CachedModels):
    def __init__(self, peer=None):
        from .precision import torch_full_precision

        super().__init__()
        self.info = torch_full_precision()
        self.peer = peer

    def load(self, task, cfg, x):
        import torch

        if self.peer and not peer_fits(self.peer, task["arch"], cfg.get("variant")):
            raise ValueError(f"{self.peer} has no {cfg.get('variant')!r} variant of {task['arch']}")
        if self.peer == "timm":
            import timm

            # timm's inception_v4 / inception_resnet_v2 have no aux head and no aux_logits argument.
            aux = {"aux_logits": cfg["aux_logits"]} if task["arch"] == "inception_v3" else {}
            model = timm.create_model(task["arch"], pretrained=False, num_classes=cfg["num_classes"],
                                      drop_rate=0.0, **aux)
            if cfg["transform_input"]:
                raise ValueError("timm's inception_v3 has no transform_input")
        elif self.peer == "torchvision":
            import torchvision

            factory = {"googlenet": torchvision.models.GoogLeNet, "inception_v3": torchvision.models.Inception3}[task["arch"]]
            model = factory(init_weights=False, **_model_kwargs(task, cfg, factory))
        else:
            from impls.torch_nn import MODELS

            factory = MODELS[task["arch"]]
            model = factory(**_model_kwargs(task, cfg))
        model.load_state_dict(torch.load(task["weights"]["torch"], map_location="cpu", weights_only=True), strict=True)
        return model.to(self.info["device"])

    def run(self, task, cfg, x):
        import torch

        model = self.model(task, cfg, x)
        # fp64 twin of our model on the same input and state: the fp32 floor every tolerance
        # is measured against (conformance.tolerances).
        reference = None if self.peer else _torch_fp64(model, x, task["mode"] == "train")
        train = task["mode"] == "train"
        model.train(train)
        counts = {}
        if train:  # per-BN element count n: converts torch's unbiased running_var update
            for name, m in model.named_modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
                        name, inp[0].numel() // inp[0].shape[1]))
        if self.peer == "timm":  # timm runs its aux head in eval mode too (it needs ~299 input): only in train
            model.aux_logits = bool(cfg["aux_logits"]) and train
        with torch.no_grad():
            out = model(torch.from_numpy(x).to(self.info["device"]))
        if self.peer == "timm" and isinstance(out, tuple):  # timm's (logits, aux) as our named tuple
            out = model_outputs_type(task, cfg)(*out)
        fields = out._fields if isinstance(out, tuple) else ("logits",)
        res = {k: v.cpu().numpy() for k, v in _outputs(out, fields).items()}
        if reference is not None:
            res.update({f"fp64:{k}": v for k, v in reference.items()})
        if train:
            sd = model.state_dict()
            res.update({f"stat:{k}": sd[k].cpu().numpy() for k in sd if k.endswith(("running_mean", "running_var"))})
            res.update({f"count:{k}": np.int64(n) for k, n in counts.items()})
        if task.get("layers"):
            from . import capture

            xt = torch.from_numpy(x).to(self.info["device"])
            blocks = (capture.torch_peer_blocks(model, xt, _block_names(task["arch"]), train) if self.peer
                      else capture.torch_blocks(model, xt, train))
            res.update({f"layer:{k}": v for k, v in blocks.items()})
        return res


class FlaxRunner(CachedModels):
    def __init__(self):
        from .precision import jax_full_precision

        super().__init__()
        self.info = jax_full_precision()

    def load(self, task, cfg, x):
        import flax.serialization

        from weights_bridge.flax_io import build_model

        with open(task["weights"]["flax"], "rb") as f:  # what a Flax user does with our file
            state = flax.serialization.msgpack_restore(f.read())
        return build_model(task["arch"], state, **_model_kwargs(task, cfg))

    def run(self, task, cfg, x):
        from flax import nnx

        from weights_bridge.flax_io import from_model

        model = self.model(task, cfg, x)
        train = task["mode"] == "train"
        model.train() if train else model.eval()
        out = nnx.jit(lambda m, x: m(x))(model, np.transpose(x, (0, 2, 3, 1)))
        res = {k: np.asarray(v) for k, v in _outputs(out, getattr(out, "_fields", ())).items()}
        if train:
            ckpt = from_model(model, task["arch"])
            res.update({f"stat:{k}": v for k, v in ckpt.tensors.items() if k.endswith(("running_mean", "running_var"))})
        if task.get("layers"):
            from .capture import flax_blocks

            res.update({f"layer:{k}": v for k, v in flax_blocks(model, np.transpose(x, (0, 2, 3, 1)), train).items()})
        return res


class KerasRunner(CachedModels):
    def __init__(self, backend):
        from .precision import keras_full_precision

        super().__init__()
        self.backend = backend
        self.info = keras_full_precision(backend)

    def load(self, task, cfg, x):
        from impls.keras3 import MODELS

        factory = MODELS[task["arch"]]
        model = factory(input_size=x.shape[-1], **_model_kwargs(task, cfg))
        model.load_weights(task["weights"]["keras"])  # Keras's own loader
        return model

    def run(self, task, cfg, x):
        from keras import ops

        from weights_bridge.keras_io import from_model

        model = self.model(task, cfg, x)
        train = task["mode"] == "train"
        xh = np.transpose(x, (0, 2, 3, 1))
        out = self._call(model, xh, train)
        res = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in _outputs(out, getattr(out, "_fields", ())).items()}
        if train:
            ckpt = from_model(model, task["arch"])
            res.update({f"stat:{k}": v for k, v in ckpt.tensors.items() if k.endswith(("running_mean", "running_var"))})
        if task.get("layers"):
            from .capture import keras_blocks

            res.update({f"layer:{k}": v for k, v in keras_blocks(model, xh, self.backend, train).items()})
        return res

    def _call(self, model, x, train):
        if self.backend != "jax":
            return model(x, training=train)
        # Keras-on-JAX runs op by op when called eagerly (tens of seconds for GoogLeNet);
        # jit the stateless call and write the updated BN statistics back.
        import jax

        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        out, ntv = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=train))(tv, ntv, x)
        for v, value in zip(model.non_trainable_variables, ntv):
            v.assign(value)
        return out


def runner(impl):
    if impl == "torch":
        return TorchRunner()
    if impl in ("torchvision", "timm"):
        return TorchRunner(peer=impl)
    if impl == "pretrainedmodels":
        from .pretrainedmodels_worker import PretrainedModelsRunner

        return PretrainedModelsRunner()
    if impl == "keras-applications":  # before the keras-<backend> rule below
        from .keras_applications_worker import KerasApplicationsRunner

        return KerasApplicationsRunner()
    if impl == "flax":
        return FlaxRunner()
    if impl.startswith("keras-"):
        return KerasRunner(impl.split("-", 1)[1])
    raise ValueError(f"unknown implementation {impl!r}")


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    impl = job["impl"]
    rn = runner(impl)
    report = {"impl": impl, "precision": rn.info, "tasks": {}}
    for task in sorted(job["tasks"], key=lambda t: t["mode"] == "train"):
        t0 = time.perf_counter()
        cfg = _config(task)
        res = rn.run(task, cfg, np.load(task["input"]))
        np.savez(os.path.join(job["out_dir"], f"{task['id']}.npz"), **res)
        report["tasks"][task["id"]] = {"seconds": round(time.perf_counter() - t0, 3)}
    with open(os.path.join(job["out_dir"], "report.json"), "w") as f:
        json.dump(report, f, indent=1)


def run_job(main_fn, job_path):
    """A worker process's entry: fix KERAS_BACKEND before anything imports keras, run, exit 1
    with the traceback on any failure."""
    impl = json.load(open(job_path))["impl"]
    if impl == "keras-applications":
        os.environ["KERAS_BACKEND"] = "tensorflow"  # keras.applications on its own backend
    elif impl.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = impl.split("-", 1)[1]
    try:
        main_fn(job_path)
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    run_job(main, sys.argv[1])
