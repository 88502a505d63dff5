"""Training: the Experiment spec, optimizers, presets, the trained-folder format and the
one trainer, offline and online."""
