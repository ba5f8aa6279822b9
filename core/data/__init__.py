"""Datasets and where slices come from: listings, the multi-source catalogue, held-out sets, bundled examples, phantoms."""
