"""Tests of the shared package every service builds on (promesa), once for all three."""
