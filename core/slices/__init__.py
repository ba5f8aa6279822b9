"""Analysing one slice: classification, ensemble, segmentation, Grad-CAM, checks, the pipeline, batches, reports."""
