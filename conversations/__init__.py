"""The domain: customers, conversations, messages and orders. Imports no other app."""
