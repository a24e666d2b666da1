"""Pings for the live-progress streams: once a transaction that saved a Run, Step, ReviewItem or Message
commits, "changed" is published on the run's (or the conversation's) channel (`api.streams`), and the
streams waiting on it read the run again. Post-save receivers, connected in `ApiConfig.ready`:
orchestration and conversations know nothing of the streams. A write that bypasses `save()` (a queryset
`update()`) sends no ping; the streams' slow poll (SSE_POLL_SECONDS) still finds it.

The pings of one transaction are sent together, each channel once, in one Redis round trip: a message POST saves a
message and a run (two channels), a step's record saves its step and its run (one channel, saved twice).
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from api.streams import changed_publish_many, conversation_channel, run_channel
from conversations.models import Message
from orchestration.models import ReviewItem, Run, Step

_pending = threading.local()


def changed_on_commit(channel: str, using: str) -> None:
    """Ping `channel` after the current transaction commits (at once outside one); a failing ping never
    fails the write (robust).

    The channel joins this thread's pending set and every registration's callback sends the whole set: the first to
    run after the commit sends each channel once, in one round trip, and the others find nothing left. (A callback
    dropped with a rolled-back savepoint leaves its channel to the next one that runs: at worst an extra ping.)"""
    channels: set[str] = _pending.__dict__.setdefault("channels", set())
    channels.add(channel)
    transaction.on_commit(changed_flush, using=using, robust=True)


def changed_flush() -> None:
    """Send this thread's pending pings (one pipeline) and forget them."""
    channels: set[str] = _pending.__dict__.get("channels", set())
    if channels:
        _pending.channels = set()
        changed_publish_many(sorted(channels))


@receiver(post_save, sender=Run, dispatch_uid="api.streams.run_saved")
def run_saved(sender: type[Run], instance: Run, using: str, **kwargs: Any) -> None:
    changed_on_commit(run_channel(instance.id), using)


@receiver(post_save, sender=Step, dispatch_uid="api.streams.step_saved")
def step_saved(sender: type[Step], instance: Step, using: str, **kwargs: Any) -> None:
    changed_on_commit(run_channel(instance.run_id), using)


@receiver(post_save, sender=ReviewItem, dispatch_uid="api.streams.review_item_saved")
def review_item_saved(sender: type[ReviewItem], instance: ReviewItem, using: str, **kwargs: Any) -> None:
    changed_on_commit(run_channel(instance.run_id), using)


@receiver(post_save, sender=Message, dispatch_uid="api.streams.message_saved")
def message_saved(sender: type[Message], instance: Message, using: str, **kwargs: Any) -> None:
    changed_on_commit(conversation_channel(instance.conversation_id), using)
