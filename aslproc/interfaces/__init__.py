"""Thin nipype interfaces: each calls one function of aslproc.utils."""
