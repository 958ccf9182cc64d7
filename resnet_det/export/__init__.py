"""Export of a trained detector to one ONNX graph (for :mod:`resnet_det.deploy`), and the
evaluation of an exported model with the evaluators the PyTorch model is evaluated with."""
