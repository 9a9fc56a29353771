"""Operator tooling for the sbcntr services (not part of any service image)."""
