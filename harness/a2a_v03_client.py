"""A v0.3 A2A client session, run by a virtualenv holding a2a-sdk 0.3.x (tests/test_a2a.py makes it): resolve the
card, `message/send` (blocking), `tasks/get`, `message/stream`; print what came back as one JSON object.

Usage: python a2a_v03_client.py BASE_URL TOKEN. Imports nothing of Switchboard (it runs outside its virtualenv).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, A2AClient
from a2a.types import (
    GetTaskRequest,
    Message,
    MessageSendParams,
    Part,
    Role,
    SendMessageRequest,
    SendStreamingMessageRequest,
    TaskQueryParams,
    TextPart,
)


def message(text: str) -> Message:
    return Message(message_id=uuid.uuid4().hex, role=Role.user, parts=[Part(root=TextPart(text=text))])


async def session(base_url: str, token: str) -> dict:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        card = await A2ACardResolver(http, base_url).get_agent_card()
        client = A2AClient(http, agent_card=card)
        sent = await client.send_message(
            SendMessageRequest(id="1", params=MessageSendParams(message=message("How long does shipping take?")))
        )
        task = sent.root.result
        got = await client.get_task(GetTaskRequest(id="2", params=TaskQueryParams(id=task.id)))
        streamed = []
        request = SendStreamingMessageRequest(
            id="3", params=MessageSendParams(message=message("How long does shipping take?"))
        )
        async for event in client.send_message_streaming(request):
            streamed.append(event.root.result.model_dump(mode="json", exclude_none=True))
        return {
            "card": {"url": card.url, "protocolVersion": card.protocol_version, "name": card.name},
            "sent": task.model_dump(mode="json", exclude_none=True),
            "got": got.root.result.model_dump(mode="json", exclude_none=True),
            "streamed": streamed,
        }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(session(sys.argv[1], sys.argv[2]))) + "\n")
