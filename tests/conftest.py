"""Suite-wide settings.

Torch's intra-op thread pool spins when the machine's cores are busy (the suite starts
``torchrun`` workers and trainer subprocesses next to itself): with 2 threads on a loaded
2-core machine a MobileNetV2 forward took 140x longer than with 1. Tests therefore run torch
single-threaded, and so do the processes they start (through the environment).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
