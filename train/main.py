"""Deprecated location of `cc100 pretrain`: it lives in `train/pretrain.py` now.

Kept so launch scripts with `torchrun ... -m train.main` keep working.
"""

import sys

from train.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
