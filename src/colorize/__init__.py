"""colorize: turn colour photos into Lab HDF5 shards, train an autoencoder, colorize grayscale photos."""

# The package version (pyproject reads it; CHANGELOG.md says what each one changed).
__version__ = "0.2.0"
