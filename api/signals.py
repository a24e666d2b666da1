"""Pings for the live-progress streams: once a transaction that saved a Run, Step, ReviewItem or Message
commits, "changed" is published on the run's (or the conversation's) channel (`api.streams`), and the
streams waiting on it read the run again. Post-save receivers, connected in `ApiConfig.ready`:
orchestration and conversations know nothing of the streams. A write that bypasses `save()` (a queryset
`update()`) sends no ping; the streams' slow poll (SSE_POLL_SECONDS) still finds it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from api.streams import changed_publish, conversation_channel, run_channel
from conversations.models import Message
from orchestration.models import ReviewItem, Run, Step


def changed_on_commit(channel: str, using: str) -> None:
    """Ping `channel` after the current transaction commits (at once outside one); a failing ping never
    fails the write (robust)."""
    transaction.on_commit(partial(changed_publish, channel), using=using, robust=True)


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
