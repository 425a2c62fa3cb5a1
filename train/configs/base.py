"""Every training config field, with the reference implementation's defaults.

The experiment configs start from it and change what differs (model, data,
batch size, epochs). `None` fields are placeholders: override them from the
command line, e.g. `--config.data_dir=../shared/data/mnist
--config.train_limit=2000`.
"""

import ml_collections
from ml_collections import config_dict


def get_config():
  """Returns the default config (see the comments for each field)."""
  config = ml_collections.ConfigDict()

  # What to train. Names come from lilnetx_tf.models / lilnetx_tf.data.
  config.model = "lenet5"
  config.model_options = ml_collections.ConfigDict()  # e.g. width, alpha.
  config.dataset = "mnist"
  # Local files (IDX directory, image tree or its .tar.gz) or a TFDS data
  # directory (for imagenet2012 also its manual directory); None: TFDS's
  # default directory (digits is embedded and ignores it).
  config.data_dir = config_dict.placeholder(str)
  config.data_source = "auto"  # "auto" (local files if found), "local", "tfds".
  config.cache_dir = config_dict.placeholder(str)  # Decoded image trees.
  config.train_limit = config_dict.placeholder(int)  # First N train examples.
  config.test_limit = config_dict.placeholder(int)
  # The validation split: this share of the training examples (of the first
  # train_limit), at most max_validation_examples, chosen by seed, is held out
  # of fitting; the best epoch (best.keras) is the one of the highest accuracy
  # on it, and the test split is only evaluated for the report. Either 0: no
  # validation split, no best epoch, only the final model.
  config.validation_fraction = 0.1
  config.max_validation_examples = 5000
  config.augment = True  # The dataset's standard training augmentation.
  # Train the same network as a plain float Keras model (the baseline).
  config.vanilla = False
  # A trained float Keras model of the same network (a `.keras` file, e.g. a
  # vanilla run's model.keras) whose weights the run starts from: LilNetX
  # latents then encode its kernels (`compressible(init_from_weights=True)`);
  # None: a fresh initialisation.
  config.init_weights = config_dict.placeholder(str)
  # A trained float Keras model (a `.keras` file) to distil from: training
  # adds distillation_weight * T^2 * KL(teacher || student) at temperature
  # T = distillation_temperature (lilnetx_tf.Distillation); None: no teacher.
  # Usually the init_weights model. Needed again to resume.
  config.teacher = config_dict.placeholder(str)
  config.distillation_weight = 1.0
  config.distillation_temperature = 4.0

  # Optimisation: Adam, linear warm-up, then cosine decay to zero.
  config.batch_size = 256  # Global batch, split over replicas.
  config.epochs = 200
  config.learning_rate = 1e-2
  config.warmup_epochs = 5
  config.prior_learning_rate = 1e-2  # The priors' own Adam.
  config.prior_steps = 2  # Prior updates per training step.
  # Compression terms and prior steps on one step in this many, scaled by it
  # (lazy regularization; see LilNetXModel). 1: every step.
  config.compression_interval = 1

  # The LilNetX objective.
  # lambda_I: nats of mean task loss one bit per latent is worth (per kernel
  # slice with `reference`).
  config.lambda_rate = 1.0
  config.rate_warmup_epochs = 0  # Ramp lambda_I up from 0 over these epochs.
  # The size / accuracy frontier from one run (lilnetx_tf.Frontier):
  # "lambda_I:epochs,..." with lambda_I not falling, e.g. "1:6,2:2,4:2";
  # each segment trains its epochs at its lambda_I (instead of lambda_rate)
  # and ends with a .lnx file in RUN/frontier/ and a row of frontier.json.
  # Its epochs add up to config.epochs. Empty: lambda_rate throughout.
  config.frontier = ""
  # With a frontier, the learning rate decays to zero in each segment
  # (train.schedule.SegmentCosineDecay) and restarts at this fraction of
  # learning_rate, so that every file is written at a rate of zero.
  config.frontier_restart = 0.3
  config.lambda_sparsity = 1e-6  # lambda_rho, on block norms.
  # "slice", "out_channel", "in_channel", or several joined by "+" (e.g.
  # "slice+out_channel": channels for speed, slices within kept channels).
  config.sparsity_structure = "slice"
  config.sparsity_norm = "l2"  # "l2", "l1", "linf".
  # Comma-separated groups under the sparsity prior, e.g. "conv3x3"; empty:
  # every group with k x k kernels, k > 1.
  config.sparsity_groups = ""
  config.weight_decay = 1e-6  # L2 on the latents (on kernels when vanilla).
  # The official PyTorch implementation's objective, term for term: rate
  # divided by the number of kernel slices (not latents), its latent
  # initialisation bound (latent_init_bound is its `boundary`), raw N(0, var)
  # decoder matrices, and the warm-up lambda * (min(e, W) + 1) / (W + 1).
  config.reference = False
  config.latent_init_bound = 2.0
  # Binary places of the power-of-two grids the decoders and biases train on,
  # so that the file stores them in a few bits each (lilnetx_tf.method.grid);
  # 0: float32; -1: the default (6, or 0 with `reference`).
  config.grid_bits = -1

  # Running.
  config.strategy = "default"  # "default", "mirrored", "multi_worker", "tpu".
  config.cpu_devices = 0  # > 1: split the CPU into logical devices (testing).
  config.tpu = ""  # TPU name or grpc:// address; empty: the local TPU VM.
  config.seed = 0
  # tf.config.experimental.enable_op_determinism(): with the same seed, the
  # same weights bit for bit, also after a resume (slower on GPUs).
  config.deterministic = False
  config.log_histograms = True  # TensorBoard histograms of the latents.
  config.coded_size_every_epoch = True  # Range code each epoch (else at end).
  config.keep_checkpoints = 2
  return config
