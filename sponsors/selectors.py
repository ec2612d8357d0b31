"""Scoped reads about sponsors, their agreements and their users."""
