"""Evaluation: the standard NYU joint-error protocol and segmentation accuracy."""
