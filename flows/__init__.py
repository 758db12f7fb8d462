"""Prefect orchestration of the perk pipeline: the flow `perk`, its deployments, the local stack.

Thin by design: every stage is `perk.stages.call(name, params)`; nothing here computes.
"""
