"""Shared code of the generative image models: data sources, image grids, the Fréchet distance."""
