"""The compressed form: integer latents range coded into a `.lnx` file.

* `codec`: range coding of the latents with per-position tables fitted to
  them;
* `coders`: the range coders by name (tensorflow-compression's,
  constriction's), which the file header records;
* `sections`: the file's sections and header, each packed and unpacked side
  by side, and the checks a reader makes before it allocates;
* `tables`: the coding tables' section (TABL), packed and unpacked;
* `floats`: the decoders (DECO) and the other float weights (FLTS), as
  float32 or, on power-of-two grids, as Rice codes;
* `rice`: the Rice code of small integers (grid weights, decoders);
* `dictionary`: the preset dictionary the header is deflated with;
* `errors`: `CorruptFileError`, and which exceptions a reader may turn into
  it;
* `architecture`: the allow-list of what a file's architecture may name;
* `tf_ops`: the TensorFlow ops an architecture may call (op layers);
* `custom_objects`: the user's registered classes and functions, stored by
  name and loaded from the caller's `custom_objects`;
* `graph_replay`: how Keras rebuilds a layer graph, replayed to check it;
* `writing`: a file's bytes, from a model or recoded with another coder;
* `reading`: the model a file's bytes describe, or a model built in code
  filled with its weights;
* `frontier`: the size / accuracy frontier from one training run;
* `fileformat`: `save_compressed`, `load_compressed`, `inspect_compressed`,
  `recode_compressed`.
"""
