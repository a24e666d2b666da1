"""The agent card (`/.well-known/agent-card.json`) and the extended card for signed-in callers."""

from __future__ import annotations

from a2a.types import a2a_pb2 as a2a
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol
from django.conf import settings

from agents.a2a_guard import LOOP_GUARD_URI

#: Where the bindings live, under PUBLIC_BASE_URL.
JSONRPC_PATH = "/a2a/jsonrpc"
REST_PATH = "/a2a/rest"
SECURITY_SCHEME = "token"

SKILLS = [
    a2a.AgentSkill(
        id="order-status",
        name="Order status",
        description="Where a customer's order is, when it ships or arrives, from the shop's order records.",
        tags=["orders", "shipping", "tracking"],
        examples=["Where is my order A1001?", "Has order A1002 shipped yet?"],
    ),
    a2a.AgentSkill(
        id="refunds",
        name="Refunds",
        description=(
            "Refunds on a customer's own orders, under the shop's refund policy; anything over the automatic limit "
            "or unclear is checked by a person before money moves."
        ),
        tags=["refunds", "returns", "money"],
        examples=["Please refund EUR 30 on order A1001, the jacket arrived torn.", "Can I get my money back?"],
    ),
    a2a.AgentSkill(
        id="help-centre",
        name="Shipping, returns and product questions",
        description="Answers from the shop's help centre: shipping times and costs, returns, sizes and care.",
        tags=["shipping", "returns", "products", "faq"],
        examples=["How long does shipping take?", "How do I return a jacket?"],
    ),
]


def agent_card(*, extended: bool = False) -> a2a.AgentCard:
    """The card, with absolute URLs from PUBLIC_BASE_URL; `extended` adds what only a signed-in caller is told."""
    base = settings.PUBLIC_BASE_URL
    description = (
        "Switchboard, a customer-service agent: order status, refunds under the shop's policy, and answers from the "
        "help centre. Replies that need a person wait for one. Text in, text out."
    )
    if extended:
        description += (
            f" Your limits: {settings.THROTTLE_RATES['message']} messages and {settings.THROTTLE_RATES['customer']} "
            f"requests; a blocking SendMessage waits up to {settings.A2A_BLOCKING_WAIT_SECONDS:.0f} s."
        )
    return a2a.AgentCard(
        name="Switchboard",
        description=description,
        version="1.0.0",
        supported_interfaces=[
            a2a.AgentInterface(
                url=base + JSONRPC_PATH,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_1_0,
            ),
            a2a.AgentInterface(
                url=base + REST_PATH,
                protocol_binding=TransportProtocol.HTTP_JSON,
                protocol_version=PROTOCOL_VERSION_1_0,
            ),
            # The same endpoints speak v0.3 to a request without an A2A-Version header; listed so that the card's
            # v0.3 fields (url, preferredTransport, protocolVersion: added by the SDK's card route) point there.
            a2a.AgentInterface(
                url=base + JSONRPC_PATH,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_0_3,
            ),
            a2a.AgentInterface(
                url=base + REST_PATH,
                protocol_binding=TransportProtocol.HTTP_JSON,
                protocol_version=PROTOCOL_VERSION_0_3,
            ),
        ],
        provider=a2a.AgentProvider(organization="Switchboard", url=base),
        documentation_url=base + "/api/v1/docs/",
        capabilities=a2a.AgentCapabilities(
            streaming=True,
            push_notifications=False,
            extended_agent_card=True,
            extensions=[
                a2a.AgentExtension(
                    uri=LOOP_GUARD_URI,
                    description=(
                        "Loop guard across agent systems: hops, the path of systems visited and the budget left, "
                        "in message metadata; a request that already went through this system, or has no hops or "
                        "budget left, is rejected. What this system spent is reported in the task's metadata."
                    ),
                    required=False,
                )
            ],
        ),
        security_schemes={
            SECURITY_SCHEME: a2a.SecurityScheme(
                http_auth_security_scheme=a2a.HTTPAuthSecurityScheme(
                    scheme="bearer",
                    description=(
                        "The customer's API token (the REST API's): `Authorization: Bearer <token>`; "
                        "`Authorization: Token <token>` works too."
                    ),
                )
            )
        },
        security_requirements=[a2a.SecurityRequirement(schemes={SECURITY_SCHEME: a2a.StringList()})],
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=SKILLS,
    )
