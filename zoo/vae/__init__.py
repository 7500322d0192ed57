"""The `vae` zoo entry: a convolutional variational autoencoder."""
