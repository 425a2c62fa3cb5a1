"""The preset dictionary the header's zlib stream is deflated with (version 5).

A small model's header is a few hundred bytes of deflated JSON, and deflate
spends much of that on the first occurrence of every key and class name.
Deflating with a preset dictionary (RFC 1950's FDICT) of the words headers
are made of lets even first occurrences be back-references: LeNet-5's header
shrinks by about a third. The dictionary is part of format version 5: a file
can only be inflated with these exact bytes, so they must never change; a
new dictionary needs a new format version.

Deflate codes near references in fewer bits, so the most common words come
last.
"""

__all__ = ["HEADER_DICTIONARY"]

HEADER_DICTIONARY = "".join((
    '"class_name":"Sequential","config":{"name":"model","layers":[',
    '"build_config":{"input_shape":[null,',
    '{"class_name":"Conv1D","config":{"name":"conv1d","filters":',
    '{"class_name":"SeparableConv2D","config":{"name":"sepconv",',
    '"depth_multiplier":1,"activation":"relu6",',
    '{"class_name":"AveragePooling2D","config":{"name":"pool",',
    '{"class_name":"Concatenate","config":{"name":"concat","axis":-1}',
    '{"class_name":"ZeroPadding2D","config":{"name":"pad",',
    '"padding":[[0,1],[0,1]]},',
    '{"class_name":"Dropout","config":{"name":"dropout","rate":0.5}',
    '{"class_name":"Activation","config":{"name":"act",',
    '"activation":"softmax"',
    '{"class_name":"Reshape","config":{"name":"reshape","target_shape":[',
    '"registered_name":"lilnetx_tf>ChannelPad","name":"pad",',
    '{"class_name":"DepthwiseConv2D","config":{"name":"dwconv",',
    '"kernel_size":[3,3],"strides":[2,2],"padding":"same","use_bias":false},',
    '{"class_name":"GlobalAveragePooling2D","config":{"name":"avg_pool"},',
    '{"class_name":"Add","config":{"name":"add"},"name":"add",',
    '{"class_name":"BatchNormalization","config":{"name":"bn","axis":[3],',
    '"momentum":0.9,"epsilon":1e-05},"name":"bn",',
    '{"class_name":"MaxPooling2D","config":{"name":"pool"},"name":"pool",',
    '{"class_name":"Flatten","config":{"name":"flatten"},"name":"flatten",',
    '"activation":"relu","use_bias":true',
    '{"class_name":"ReLU","config":{"name":"relu"},"name":"relu",',
    '{"class_name":"Dense","config":{"name":"fc","units":',
    '{"class_name":"Conv2D","config":{"name":"conv","filters":',
    '"kernel_size":[5,5]},"name":"conv","inbound_nodes":[[["conv",0,0,{}]]]},',
    '"kernel_size":[3,3],"padding":"same","use_bias":false},"name":"conv",',
    '"input_layers":[["image",0,0]],"output_layers":[["logits",0,0]]},',
    '"keras_version":"2.14.0","backend":"tensorflow"}}',
    '"architecture":{"class_name":"Functional","config":{"name":"model",',
    '"trainable":true,"layers":[{"class_name":"InputLayer","config":',
    '{"batch_input_shape":[null,32,32,3],"name":"image"},"name":"image",',
    '"inbound_nodes":[]},',
    '"float_params":[{"layer":"conv","index":1,"shape":[64],"grid":[-7,6,',
    '{"layer":"bn","index":0,"shape":[64],"grid":[0,0,8]},',
    '{"format_version":5,"float_dtype":"float32","groups":[',
    '{"name":"conv1x1","positions":1,"cdf_length":',
    '{"name":"depthwise3x3","positions":9,"cdf_length":',
    '{"name":"dense","positions":1,"cdf_length":',
    '{"name":"conv5x5","positions":25,"cdf_length":',
    '{"name":"conv3x3","positions":9,"cdf_length":',
    '"layers":["conv"],"weights":[0,0,0,0,0,0],',
    '"shapes":[[1,1,',
    '"shapes":[[5,5,1,',
    '"shapes":[[3,3,3,16],[3,3,',
    '"decoder":[-7,6]},',
    '"inbound_nodes":[[["',
    '",0,0,{}]]]},',
)).encode("ascii")
