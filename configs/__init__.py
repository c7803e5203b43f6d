"""Ready experiment configs, loadable by name with birdie_jax.load_config."""
