"""Keras 3 architectures (one definition for TensorFlow here and JAX on a GPU) and their losses."""
