"""The keras.applications peer: ``keras.applications.InceptionV3`` / ``InceptionResNetV2`` on its own backend (tensorflow),
holding a "keras"-variant checkpoint exported by the bridge, run by ``conformance.worker``.

Built with ``classifier_activation=None`` (logits; its default is softmax) at the task's input
size. Train mode: its BN momentum is 0.99 (Keras' default); a training hyperparameter, not a
checkpoint fact, so it is set to 0.9 (= torch's 0.1, what our implementations use) before the
step, making the running statistics comparable. It has no aux head: train mode returns logits.
"""
from __future__ import annotations

import numpy as np

from .worker import CachedModels, peer_fits


class KerasApplicationsRunner(CachedModels):
    def __init__(self):
        from .precision import keras_full_precision

        super().__init__()
        self.info = keras_full_precision("tensorflow")

    def model(self, task, cfg, x):
        """Its input shape is fixed when built: one model per (architecture, input size)."""
        key = (task["arch"], x.shape[-1])
        if key not in self._models:
            self._models[key] = self.load(task, cfg, x)
        return self._models.pop(key) if task["mode"] == "train" else self._models[key]

    def load(self, task, cfg, x):
        from weights_bridge.peers import keras_applications as ka

        if not peer_fits("keras-applications", task["arch"], cfg.get("variant")):
            raise ValueError(f"keras.applications has no {cfg.get('variant')!r} variant of {task['arch']}")
        # What a keras.applications user does with the file: load_weights into the stock model.
        return ka.load_model(task["weights"]["keras-applications"], input_size=x.shape[-1], architecture=task["arch"])

    def run(self, task, cfg, x):
        from keras import ops

        from weights_bridge.peers import keras_applications as ka

        model = self.model(task, cfg, x)
        train = task["mode"] == "train"
        if train:
            for layer in model.layers:
                if type(layer).__name__ == "BatchNormalization":
                    layer.momentum = 0.9
        out = model(np.transpose(x, (0, 2, 3, 1)), training=train)
        res = {"logits": np.asarray(ops.convert_to_numpy(out))}
        if train:
            ckpt = ka.to_checkpoint(model, "keras.applications model", allow_nonfinite=True, architecture=task["arch"])
            res.update({f"stat:{k}": v for k, v in ckpt.tensors.items() if k.endswith(("running_mean", "running_var"))})
        if task.get("layers"):  # after the statistics: a train-mode capture updates them again
            from .keras_applications_capture import keras_applications_blocks

            blocks = keras_applications_blocks(model, task["arch"], np.transpose(x, (0, 2, 3, 1)), train)
            res.update({f"layer:{k}": v for k, v in blocks.items()})
        return res
