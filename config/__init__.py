"""Configuration: one typed settings object, the Celery config and the beat schedule."""

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
