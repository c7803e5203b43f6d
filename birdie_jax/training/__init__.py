"""birdie_jax.train"""
