from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the live-progress pings (post_save receivers). Imported here, not at the top: the models
        # the receivers name can be imported only once the app registry is ready.
        from api import signals  # noqa: F401
