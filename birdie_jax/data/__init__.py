"""birdie_jax.data"""
