"""What only the TensorFlow/Keras backend has (Keras' own compile/fit, tf.data, XLA)."""
