"""The domain: customers, conversations, messages, orders and the refund policy. Imports no other app."""
