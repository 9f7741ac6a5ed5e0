"""Full fp32 precision for every framework a worker runs (TF32 and bf16 matmuls off)."""
from __future__ import annotations


def torch_full_precision() -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"device": device, "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


def jax_full_precision() -> dict:
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    return {"device": jax.default_backend(), "jax_default_matmul_precision": "highest"}


def tf_full_precision() -> dict:
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)
    return {"device": "gpu" if tf.config.list_physical_devices("GPU") else "cpu", "tf32": False}


def keras_full_precision(backend: str) -> dict:
    return {"jax": jax_full_precision, "torch": torch_full_precision, "tensorflow": tf_full_precision}[backend]()
