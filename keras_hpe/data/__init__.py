"""Data: the hand, the renderer, the simulated sensor, NYU, crops and data sets on disk."""
