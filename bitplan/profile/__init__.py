"""Profiling: the GEMMs of a model with their accumulation, usage frequency and depth."""

from bitplan.profile.schema import GemmLayer, GemmOp, ModelProfile, Tracer

__all__ = ["GemmLayer", "GemmOp", "ModelProfile", "Tracer"]
