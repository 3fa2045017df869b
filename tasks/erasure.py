"""Thin Celery tasks of core/erasure (family maintenance)."""

from __future__ import annotations
