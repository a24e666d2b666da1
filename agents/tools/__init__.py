"""Tools agents use to act on the world: order lookup, refunds, escalation to a person.

Read-only tools run when an agent calls them; side-effecting tools (refunds)
are only *proposed* by agents, checked by the validator (or approved by a
person) and executed by deliver through the ledger, at most once.
"""
