"""Deployment: the decompressed model, made smaller and converted to TFLite.

* `graph`: the functional-graph walker and layer facts the steps share;
* `fold`: batch-norm folding;
* `prune`: exact removal of zero channels;
* `tf_op_channels`: how channels flow through TensorFlow op layers;
* `remaining_zeros`: the zeros left in kept channels, and what skips them;
* `tflite`: the export (decode, fold, prune, convert);
* `tflite_check`: verification and latency of `.tflite` files;
* `tflite_sparse`: sparse-tensor storage and XNNPACK sparse eligibility.
"""
