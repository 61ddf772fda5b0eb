"""Keras layers and functional models: shifted pooling, the segmentation and regression networks."""
