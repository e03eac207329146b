"""imagecloud: a self-hostable image cloud recognition service."""

__version__ = "0.1.0"
