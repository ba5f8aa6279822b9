"""Pixel and mask maths: arrays in, arrays out (preprocessing, metrics, shape measures, overlays)."""
