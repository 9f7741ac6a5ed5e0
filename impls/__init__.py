"""GoogLeNet and the Inception family, written once (``impls.spec``) and translated to
PyTorch (``impls.torch_nn``), Flax NNX (``impls.flax_nnx``) and Keras 3 (``impls.keras3``).

Import only the framework you use: each subpackage imports its framework on import.
"""
