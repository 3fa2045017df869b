"""Thin Celery tasks of core/retention (family maintenance)."""

from __future__ import annotations
