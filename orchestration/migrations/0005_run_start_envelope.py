from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0004_reviewers_group")]

    operations = [
        migrations.RenameField(model_name="run", old_name="initial_envelope", new_name="start_envelope"),
        migrations.AlterField(model_name="run", name="start_envelope", field=models.JSONField(default=dict)),
    ]
