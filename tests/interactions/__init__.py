"""Tests of the interactions service."""
