"""Benchmarks that anyone can rerun: recognition quality and speed on a folder of real photos."""
