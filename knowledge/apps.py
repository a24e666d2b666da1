from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Knowledge base"

    def ready(self) -> None:
        post_migrate.connect(demo_when_empty, sender=self, dispatch_uid="knowledge.demo_when_empty")


def demo_when_empty(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """After migrate, an empty knowledge base gets the demo shop's help centre (KNOWLEDGE_DEMO_WHEN_EMPTY): the demo is
    the default, so a fresh clone answers (the Procfile started bare, `make run`) before anyone imports a document.
    Importing your own with `--prune` replaces it; it is loaded again only if the knowledge base is empty again."""
    # Imported here: this module is imported while the app registry loads, before models can be.
    from django.conf import settings

    from knowledge.models import Document
    from knowledge.services import demo_documents_load

    if settings.KNOWLEDGE_DEMO_WHEN_EMPTY and not Document.objects.using(using).exists():
        demo_documents_load()
