"""Shipped ONNX networks and their manifest (data package: found by importlib.resources)."""
