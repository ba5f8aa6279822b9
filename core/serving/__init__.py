"""Shipped models: the registry of cards and checksums, the LiteRT runtime, compact weights, export."""
