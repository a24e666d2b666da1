"""Switchboard as an A2A (Agent2Agent protocol) agent: the agent card, JSON-RPC and HTTP+JSON bindings (v1.0, with
v0.3 compatibility), on the official `a2a-sdk`'s types and route factories, mounted in the ASGI app beside Django.

An interface, not an executor (docs/a2a.md): a message starts a run as the REST API's does, and every answer is
read from the database, so any web process answers for any task. Named `a2a_server`, not `a2a`, because the SDK's
package is `a2a`.
"""
