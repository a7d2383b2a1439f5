"""Fleetcast trainer: a small Temporal Fusion Transformer, its evaluation and its ONNX export."""
