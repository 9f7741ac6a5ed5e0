"""Importers and exporters for peer libraries' own checkpoint files (timm, keras.applications,
pretrainedmodels).

Each module has the ``read(path, architecture, allow_nonfinite)`` / ``write(ckpt, path, overwrite)``
interface of the framework formats, and imports no peer library unless it must (torchvision and
timm must never be imported after tensorflow, which the bridge's conversions may have loaded).
"""
