"""Brokers behind one small contract; the settings' broker connection builds the one in use."""

from __future__ import annotations

from shared.brokers.base import Backlog, Broker, OutgoingMessage

__all__ = ["Backlog", "Broker", "OutgoingMessage"]
