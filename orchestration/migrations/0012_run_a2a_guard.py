from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0011_review_item_cancelled")]

    operations = [
        migrations.AddField(model_name="run", name="a2a_guard", field=models.JSONField(blank=True, null=True)),
    ]
