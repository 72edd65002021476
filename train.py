"""Entry point: ``python train.py fit -c configs/segmentation/shapes.yaml key=value ...``."""

import sys

from trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
