"""Pallas kernels: one module per kernel, each with a plain-jnp reference. Imports jax only."""
