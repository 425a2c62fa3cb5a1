"""The method: a weight's training form and the objective that shapes it.

* `layers`: latent Conv1D / Conv2D / DepthwiseConv2D / SeparableConv2D /
  Dense layers (kernels stored as latents, rounded with a straight-through
  gradient);
* `groups`: kernel groups (layers of one kernel shape, sharing a decoder and a
  prior) and the slice and position views of a kernel;
* `decoders`: the shared, shift-free decoder of each group;
* `priors`: the learned factorized prior of each group (the rate term);
* `sparsity`: block norms of the latents (the structured sparsity term);
* `grid`: the power-of-two grids decoders and biases train on, so the file
  stores them exactly in a few bits;
* `model`: `LilNetXModel`, the objective and its training step;
* `model_args`: `LilNetXModel`'s arguments, checked before anything is built;
* `prior_fit`: the priors' own objective and steps, which keep them tracking
  the latents;
* `interval`: `compression_interval`, the compression terms on one training
  step in k;
* `distillation`: an optional distillation term from a float teacher;
* `initialization`: the model's initial latents and decoders;
* `convert`: plain Keras model <-> LilNetX model;
* `subclassed`: a subclassed model's layers replaced in place (its
  conversion);
* `named_weights`: a model's weights by layer name in the plain form
  (weights-only files, `into=`);
* `callbacks`: Keras callbacks for LilNetX training;
* `stats`: size, sparsity and MAC figures of LilNetX and plain models.
"""
