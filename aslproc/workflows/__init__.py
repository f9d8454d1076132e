"""Nipype workflow factories: they build and connect nodes and compute nothing."""
