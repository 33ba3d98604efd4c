"""Trains a WGAN-GP (or the DCGAN baseline) for image completion.

  python train.py --config configs/celeba64.py --workdir runs/celeba64
  python train.py --config configs/tiny.py --workdir runs/tiny \
      --config.train.steps=20

Rerunning the same command resumes from the latest checkpoint.
"""
from jaxinpaint.cli import train_main

if __name__ == '__main__':
  train_main()
