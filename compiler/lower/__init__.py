"""Lowering: a checked syntax tree and a hook → IR over virtual registers."""
