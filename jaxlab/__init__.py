"""jaxlab: sustainable and scalable ML research methods as pure, jittable, shardable JAX functions."""

__version__ = "0.1.0"
