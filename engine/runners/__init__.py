"""Composition roots: the only modules that know engine, sim, venues and strategies together."""
