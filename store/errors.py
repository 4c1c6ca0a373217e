"""The store's refusals. Each is raised before anything was changed.

May import `store.model` only (a stale edit carries the current customer).
"""

from __future__ import annotations

from store.model import Customer


class StoreError(Exception):
    """Raised when the store refuses an operation; nothing was changed."""


class Fenced(StoreError):
    """Raised by a push whose log entries this consumer no longer holds: another node took
    them over while this one was presumed dead. Nothing was changed."""


class StaleVersion(StoreError):
    """Raised when a customer edit was based on an old version; carries the current one."""

    def __init__(self, current: Customer) -> None:
        super().__init__(f"customer {current.id} is at version {current.version}")
        self.current = current


class UnknownCustomer(StoreError):
    """Raised when the customer named does not exist."""


class UnknownConversation(StoreError):
    """Raised when the conversation named does not exist."""


class CampaignExists(StoreError):
    """Raised when a campaign is created under an id that is taken."""


class UnknownCampaign(StoreError):
    """Raised when the campaign named does not exist."""


class CampaignStopped(StoreError):
    """Raised when a stopped campaign is asked to change (stopped is final)."""
