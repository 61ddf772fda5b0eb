"""keras_hpe: hand pose estimation through semi- and weakly-supervised learning.

A TensorFlow 2 / Keras 3 reproduction of Neverova, Wolf, Nebout and Taylor,
"Hand Pose Estimation through Semi-Supervised and Weakly-Supervised Learning",
CVIU 2017.
"""

__version__ = "0.1.0"
