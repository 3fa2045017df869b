"""Fixtures the fault suite shares with the integration tests."""

from tests.integration.test_deadletters import poison_rule

__all__ = ["poison_rule"]
