"""Training: run descriptions, the engines that train them, progress as plain data, runs on disk."""
