"""The `gan` zoo entry: DCGAN, or WGAN-GP as an option."""
