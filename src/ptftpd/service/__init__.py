"""Running the servers as system services: privilege drop, sd_notify, Prometheus metrics.

Each module is a self-contained building block the server CLIs call at start-up; none of
them knows about TFTP or DHCP internals.
"""
