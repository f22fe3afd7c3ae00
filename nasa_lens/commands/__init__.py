"""CLI commands, one module per family; each exposes ``register(subparsers)``."""
