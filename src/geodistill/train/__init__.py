"""The distillation loop, its checkpoints and its run folder."""
