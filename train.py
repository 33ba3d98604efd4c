"""Trains a model: `python train.py --help` (jaxinpaint.train_cli.TRAIN_USAGE)."""
from jaxinpaint.train_cli import main

if __name__ == '__main__':
  main()
