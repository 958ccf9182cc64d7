"""Both trainers on detectron2's training loop and hooks (detection: ``DefaultTrainer``;
classification pretraining: a ``SimpleTrainer``), launched by detectron2's ``launch``, and the
PyTorch predictor."""
