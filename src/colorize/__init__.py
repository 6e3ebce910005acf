"""colorize: turn colour photos into Lab HDF5 shards, train an autoencoder, colorize grayscale photos."""

__version__ = "0.1.0"
