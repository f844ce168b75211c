"""Outage alerts for technicians: rules, the evaluator, notifications and their channels."""
