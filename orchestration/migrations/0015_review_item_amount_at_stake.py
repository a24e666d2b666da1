"""ReviewItem.amount_at_stake and stake_currency: the proposed refunds summed, for the queue's sorting; filled in for
the items already there (the same rule as `orchestration.review_stake.refunds_at_stake`, copied: a migration does
not import code that may change)."""

import re
from decimal import Decimal

from django.db import migrations, models

AMOUNT = re.compile(r"^[0-9]{1,8}(?:\.[0-9]{1,2})?\Z")


def _amount(value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = repr(value) if isinstance(value, float) else str(value)
    return Decimal(text) if AMOUNT.match(text) else None


def stake_fill(apps, schema_editor):
    """The open items only (the queue sorts them; a decided item keeps no stake), in batches of 500 (one UPDATE per
    batch, not per row)."""
    ReviewItem = apps.get_model("orchestration", "ReviewItem")
    batch = []
    for item in ReviewItem.objects.filter(status="open", proposed_action__isnull=False).iterator(chunk_size=500):
        actions = item.proposed_action if isinstance(item.proposed_action, list) else []
        refunds = [a for a in actions if isinstance(a, dict) and a.get("type") == "refund"]
        if not refunds:
            continue
        amounts = [_amount(a.get("amount")) for a in refunds]
        item.amount_at_stake = sum((a for a in amounts if a is not None), Decimal("0"))
        item.stake_currency = "+".join(sorted({str(a.get("currency") or "") for a in refunds} - {""}))[:16]
        batch.append(item)
        if len(batch) == 500:
            ReviewItem.objects.bulk_update(batch, ["amount_at_stake", "stake_currency"])
            batch = []
    ReviewItem.objects.bulk_update(batch, ["amount_at_stake", "stake_currency"])


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0014_replay"),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewitem",
            name="amount_at_stake",
            field=models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
        ),
        migrations.AddField(
            model_name="reviewitem",
            name="stake_currency",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.RunPython(stake_fill, migrations.RunPython.noop),
    ]
