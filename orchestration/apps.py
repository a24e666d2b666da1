from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orchestration import (
            checks,  # noqa: F401  (registers the system checks)
            replay_reviews,  # noqa: F401  (answers a replay's reviews from the record)
        )
