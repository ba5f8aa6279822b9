"""Whether an input can be trusted: the MRI input guard, the non-MRI test set, fingerprints and the training-set look-up."""
