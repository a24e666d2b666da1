"""Replaying dead letters is its own permission: the reviewers group gets it (with viewing dead letters), and an
"operators" group is made for the people who run the workers (runs, steps and dead letters; no conversations).
Frozen copies of orchestration.permissions' lists, as in 0004."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWERS_ADDED = [
    ("orchestration", "view_deadletter"),
    ("orchestration", "replay_deadletter"),
]
OPERATOR_PERMISSIONS = [
    ("orchestration", "view_run"),
    ("orchestration", "view_step"),
    ("orchestration", "view_stepattempt"),
    ("orchestration", "view_deadletter"),
    ("orchestration", "replay_deadletter"),
]


def _permissions(apps, pairs):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    return [Permission.objects.get(content_type__app_label=label, codename=codename) for label, codename in pairs]


def add_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    reviewers, _ = Group.objects.get_or_create(name="reviewers")
    reviewers.permissions.add(*_permissions(apps, REVIEWERS_ADDED))
    operators, _ = Group.objects.get_or_create(name="operators")
    operators.permissions.add(*_permissions(apps, OPERATOR_PERMISSIONS))


def remove_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name="operators").delete()
    reviewers = Group.objects.filter(name="reviewers").first()
    if reviewers is not None:
        Permission = apps.get_model("auth", "Permission")
        for label, codename in REVIEWERS_ADDED:
            reviewers.permissions.remove(*Permission.objects.filter(content_type__app_label=label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0008_second_approval_and_replay_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
