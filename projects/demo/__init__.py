"""The main job, ``make demo``: the whole project end to end on generated data, on a CPU."""
