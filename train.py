"""Trains a model: `python train.py --help` (jaxinpaint.cli.TRAIN_USAGE)."""
from jaxinpaint.cli import train_main

if __name__ == '__main__':
  train_main()
