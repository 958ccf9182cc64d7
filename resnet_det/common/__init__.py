"""Pieces both stages share: ``image`` (the one image reader; numpy and Pillow only, so the
deploy runner imports it without torch) and ``sampling`` (seeds and the resumable sampler)."""
