"""Training: classes, folds, data, model factory, loop, checkpoints, runs on disk."""
