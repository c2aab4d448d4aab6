"""Training: examples from labels, hard negatives, student–teacher mining, the trainer and its losses, validation."""
