"""Trains a model: `python train.py --help` (jaxinpaint.train.TRAIN_USAGE)."""
from jaxinpaint.cli.train import main

if __name__ == '__main__':
  main()
