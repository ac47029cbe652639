"""Example Python hooks for kext resources."""
