"""Maintainers' side: data import and build, model training, evaluation and ONNX export (torch)."""
