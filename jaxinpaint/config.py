"""The configuration schema: every key a run can set, with its default.

Files in `configs/` start from `base_config()` and change what differs, so a
key read by the library always exists (a typo on the command line is an
error, not a silently ignored value).
"""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Exactly one source: a folder of images, an .npz of uint8 images, or a
  # tensorflow-datasets name read with tfds.data_source (no TensorFlow).
  c.data = ml_collections.ConfigDict()
  c.data.folder = ''
  c.data.npz = ''
  c.data.tfds_name = ''
  c.data.tfds_data_dir = ''  # '' = tfds default (~/tensorflow_datasets)
  c.data.split = 'train'
  c.data.skip_corrupt = False  # True: skip unreadable files and count them
  c.data.num_threads = 8  # decoding threads of the background prefetch
  c.data.prefetch_batches = 8
  # True: decode the whole set once into one uint8 array on the accelerator
  # (replicated) and draw each batch inside the jitted step: no host
  # pipeline, no per-step host-to-device copy.
  c.data.on_device = False
  c.data.cache = ''  # .npy of the decoded set (on_device): reused next run

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'wgan'  # 'wgan' (residual G, D, Dp) or 'dcgan' (Yeh et al.)
  c.model.resolution = 64
  c.model.width = 64  # base width d
  c.model.z_dim = 128
  c.model.dtype = 'float32'  # activations; 'bfloat16' on GPUs

  c.train = ml_collections.ConfigDict()
  c.train.loss = 'wgan_gp'  # 'wgan_gp' or 'gan' (non-saturating, DCGAN)
  c.train.batch_size = 64
  c.train.steps = 100_000  # generator steps
  c.train.n_critic = 5
  c.train.gp_weight = 10.0
  c.train.learning_rate = 1e-4
  c.train.b1 = 0.0
  c.train.b2 = 0.9
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.sample_every = 1000
  c.train.keep_checkpoints = 2
  c.train.bn_recalibration_batches = 200  # after training, for completion
  c.train.multiprocess = False  # call jax.distributed.initialize()
  # Seconds from process start (data loading and compilation included);
  # at the deadline training stops between steps and finishes normally:
  # checkpoint, BatchNorm recalibration, export. 0 = no limit.
  c.train.time_limit = 0.0
  c.train.export_to = ''  # at the end, export the inference model here
  c.train.export_dtype = 'bfloat16'
  # Warm start: an exported model or a work dir of the same networks; its
  # G, D, Dp and G's BatchNorm statistics, fresh optimizers, its step count.
  c.train.init_from = ''
  # The n_critic loop: 'scan' compiles the critic step once (accelerators:
  # much shorter compilation), 'unroll' (CPU: XLA:CPU runs convolutions in
  # a loop body on a slow path); 'auto' picks by platform.
  c.train.critic_loop = 'auto'
  return c
