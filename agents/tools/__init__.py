"""The LLM-facing adapters of the shop's tools: the tools agent with its tool schemas, the
escalate-to-human tool and the ledger call that executes refunds.

The rules themselves are the domain's (`conversations`): order lookups scoped to the
customer, the refund policy and the refund write. Read-only tools run when the model
calls them; a refund is only *proposed*, checked by the validator (or approved by a
person) and executed by deliver through the ledger, at most once. MCP servers' tools
(`mcp`, `mcp_agent`) follow the same rules: read-only ones run, acting ones are proposed.
"""
