"""The README's "Use your own documents", end to end: documents imported from a folder outside the package with
`manage.py knowledge import`, then a customer's question over the REST API answered from them by a real worker."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from knowledge.models import Document
from tests.conftest import run_wait

pytestmark = [pytest.mark.e2e]

OWN_DOC = """# Bike care

## Chain cleaning
Clean the chain of your bicycle with a degreaser every 300 kilometres, then oil it lightly.

> Internal: staff may send a free chain tool to customers who complain twice.
"""


@pytest.fixture
def own_folder(tmp_path: Path, transactional_db: Any) -> Iterator[Path]:
    """A shop's own help centre, outside the package; removed again after the test (the demo stays)."""
    folder = tmp_path / "shop-help"
    folder.mkdir()
    (folder / "bike-care.md").write_text(OWN_DOC)
    yield folder
    Document.objects.filter(source__startswith=str(folder)).delete()


def test_a_question_is_answered_from_documents_imported_from_a_folder(worker, make_customer, api, own_folder) -> None:
    out = io.StringIO()
    call_command("knowledge", "import", str(own_folder), stdout=out)
    assert "1 added" in out.getvalue()
    _, token = make_customer()
    client = api(token)
    conversation_id = client.post("/conversations/").json["id"]
    posted = client.post(
        f"/conversations/{conversation_id}/messages/", {"content": "How often should I clean my bike chain?"}
    )
    run = run_wait(posted.json["run"]["id"])
    assert run.status == "completed", (run.reason, run.reason_detail)
    reply = client.get(f"/conversations/{conversation_id}/messages/").json[-1]["content"]
    assert "every 300 kilometres" in reply and "Source: Bike care" in reply
    assert "free chain tool" not in reply  # the staff-only note is never retrieved
