"""What each training stage does: tf.data input, fit, resume."""
