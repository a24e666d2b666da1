"""The "reviewers" group: may view runs and review items and decide review items."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSIONS = [
    ("orchestration", "decide_reviewitem"),
    ("orchestration", "view_reviewitem"),
    ("orchestration", "view_reviewdecision"),
    ("orchestration", "view_run"),
    ("orchestration", "view_step"),
    ("orchestration", "view_stepattempt"),
    ("conversations", "view_conversation"),
    ("conversations", "view_message"),
    ("conversations", "view_order"),
]


def create_group(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="reviewers")
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="reviewers").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0003_review_decisions"),
        ("conversations", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
