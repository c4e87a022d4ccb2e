"""Training: the trainer, its step, the optimizers, the runtime and the run's horizon."""
