"""The method: a weight's training form and the objective that shapes it.

* `layers`: latent Conv2D / DepthwiseConv2D / Dense layers (kernels stored as
  latents, rounded with a straight-through gradient);
* `groups`: kernel groups (layers of one kernel shape, sharing a decoder and a
  prior) and the slice and position views of a kernel;
* `decoders`: the shared, shift-free decoder of each group;
* `priors`: the learned factorized prior of each group (the rate term);
* `sparsity`: block norms of the latents (the structured sparsity term);
* `model`: `LilNetXModel`, the objective, its training step and prior fit;
* `distillation`: an optional distillation term from a float teacher;
* `initialization`: the model's initial latents and decoders;
* `convert`: plain Keras model <-> LilNetX model;
* `callbacks`: Keras callbacks for LilNetX training;
* `stats`: size, sparsity and MAC figures of LilNetX and plain models.
"""
